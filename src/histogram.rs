//! A lock-free histogram that plugs into `prometheus-client`.
//!
//! `prometheus-client`'s own [`Histogram`](prometheus_client::metrics::histogram::Histogram)
//! takes a mutex on every observation. This one adds to atomic bucket counters instead,
//! sharded per thread on separate cache lines, so that threads observing at the same time
//! do not wait for each other nor fight over one cache line. It encodes through
//! `prometheus-client`'s [`EncodeMetric`] trait, so it registers in a [`Registry`] and
//! works in a [`Family`] like any metric of that crate.
//!
//! [`Registry`]: prometheus_client::registry::Registry
//! [`Family`]: prometheus_client::metrics::family::Family

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{
    EncodeMetric, MetricEncoder, NativeHistogram, NativeHistogramBuckets, NoLabelSet,
};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::error::Error;
use crate::sharded::ShardedCells;

/// The upper bounds of a histogram's buckets: finite, strictly increasing, validated once.
///
/// The `+Inf` bucket is implicit. Cloning is cheap (the bounds are shared).
///
/// ```
/// use tower_prometheus::Buckets;
///
/// let buckets = Buckets::new([0.1, 0.5, 1.0])?;
/// assert_eq!(buckets.bounds(), &[0.1, 0.5, 1.0]);
/// assert!(Buckets::new([1.0, 1.0]).is_err());
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets(Arc<[f64]>);

impl Buckets {
    /// Buckets with these upper bounds.
    ///
    /// A trailing `f64::INFINITY` is accepted and dropped (the `+Inf` bucket is always
    /// there). Any other bound that is not finite, or bounds that are not strictly
    /// increasing, are an [`Error::InvalidBuckets`]. No bounds at all is valid: the
    /// histogram then has only the `+Inf` bucket.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Result<Self, Error> {
        let mut bounds: Vec<f64> = bounds.into_iter().collect();
        if bounds.last() == Some(&f64::INFINITY) {
            bounds.pop();
        }
        if let Some(bad) = bounds.iter().find(|b| !b.is_finite()) {
            return Err(Error::InvalidBuckets(format!(
                "bounds must be finite numbers, got {bad}"
            )));
        }
        if let Some(pair) = bounds.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(Error::InvalidBuckets(format!(
                "bounds must be strictly increasing ({} follows {})",
                pair[1], pair[0]
            )));
        }
        Ok(Self(bounds.into()))
    }

    /// The OpenTelemetry advisory buckets for HTTP durations, in seconds: 0.005, 0.01,
    /// 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10.
    pub fn duration_seconds() -> Self {
        Self(Arc::new([
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        ]))
    }

    /// Buckets for body sizes, in bytes: 0, then powers of 4 from 64 B to 16 MiB
    /// (0, 64, 256, 1 KiB, 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB).
    pub fn size_bytes() -> Self {
        Self(
            std::iter::once(0.0)
                .chain((3..=12).map(|power| 4f64.powi(power)))
                .collect(),
        )
    }

    /// The upper bounds, without the implicit `+Inf`.
    pub fn bounds(&self) -> &[f64] {
        &self.0
    }
}

/// The native (exponential, sparse) buckets of a histogram: their resolution and range.
///
/// Prometheus' native histograms need no bucket bounds chosen in advance: bucket `i`
/// holds the observations in `(base^(i-1), base^i]`, with `base = 2^(2^-schema)`, so
/// every bucket is about `base - 1` wider than the one before (9% at schema 3).
/// Observations at or below the zero threshold count in the zero bucket. Counters are
/// allocated for every bucket of the range up front, so that observing never allocates
/// nor takes a lock: the range bounds the buckets (and the memory) per series, and an
/// observation above it counts in the highest bucket, so quantiles above the range read
/// as its upper end. (Go's client lowers the resolution instead, which needs a lock.)
///
/// ```
/// use tower_prometheus::NativeBuckets;
///
/// let buckets = NativeBuckets::duration_seconds();
/// assert_eq!(buckets.schema(), 3);
/// assert_eq!(buckets.zero_threshold(), 2f64.powi(-17));
/// assert_eq!(buckets.len(), 192);
///
/// // Coarser: schema 0 doubles from one bucket to the next, 1 ms to 64 s.
/// let coarse = NativeBuckets::new(0, 0.001, 64.0)?;
/// assert_eq!(coarse.len(), 16);
/// assert!(NativeBuckets::new(9, 0.001, 64.0).is_err(), "schema is -4 to 8");
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeBuckets {
    schema: i8,
    /// `2^schema`: an index is `ceil(log2(v) * scale)`.
    scale: f64,
    /// At a positive schema, the bounds of the buckets of one power of two
    /// ([`octave_bounds`]); empty at the others.
    octave: &'static [f64],
    zero_threshold: f64,
    /// The index of the lowest and the highest bucket.
    lowest: i32,
    highest: i32,
}

impl NativeBuckets {
    /// The most buckets a range may span.
    pub const MAX_LEN: usize = 1024;

    /// Buckets at resolution `schema` (from -4, each bucket 65,536 times the one before,
    /// to 8, 0.27% wider), from `zero_threshold` (exclusive: observations up to it count
    /// in the zero bucket) to the bucket holding `max`.
    ///
    /// An [`Error::InvalidBuckets`] when the schema is out of range, the threshold is
    /// not a positive finite number, `max` is not finite and above it, or the range spans
    /// more than [`MAX_LEN`](Self::MAX_LEN) buckets.
    pub fn new(schema: i8, zero_threshold: f64, max: f64) -> Result<Self, Error> {
        if !(-4..=8).contains(&schema) {
            return Err(Error::InvalidBuckets(format!(
                "a native schema is from -4 to 8, got {schema}"
            )));
        }
        if !(zero_threshold.is_finite() && zero_threshold > 0.0) {
            return Err(Error::InvalidBuckets(format!(
                "the zero threshold must be a positive number, got {zero_threshold}"
            )));
        }
        if !(max.is_finite() && max > zero_threshold) {
            return Err(Error::InvalidBuckets(format!(
                "the native range's top must be a number above the zero threshold, got {max}"
            )));
        }
        let scale = 2f64.powi(i32::from(schema));
        // The first bucket whose range is above the threshold, and the one holding `max`.
        let lowest = (zero_threshold.log2() * scale).floor() as i32 + 1;
        let highest = (max.log2() * scale).ceil() as i32;
        let len = i64::from(highest) - i64::from(lowest) + 1;
        if len > Self::MAX_LEN as i64 {
            return Err(Error::InvalidBuckets(format!(
                "the native range spans {len} buckets, more than {}",
                Self::MAX_LEN
            )));
        }
        Ok(Self {
            schema,
            scale,
            octave: octave_bounds(schema),
            zero_threshold,
            lowest,
            highest: highest.max(lowest),
        })
    }

    /// For durations in seconds: schema 3 (each bucket 9% wider than the one before),
    /// from 2^-17 s (7.6 µs; below, the zero bucket) to 2^7 s (128 s): 192 buckets.
    pub fn duration_seconds() -> Self {
        Self::new(3, 2f64.powi(-17), 128.0).expect("a valid range")
    }

    /// The resolution: each bucket is `2^(2^-schema)` times as wide as the one before.
    pub fn schema(&self) -> i8 {
        self.schema
    }

    /// Observations at or below this count in the zero bucket.
    pub fn zero_threshold(&self) -> f64 {
        self.zero_threshold
    }

    /// The number of buckets in the range (the zero bucket aside).
    pub fn len(&self) -> usize {
        (self.highest - self.lowest + 1) as usize
    }

    /// Never: a range has at least one bucket. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The index of the bucket `v` (above the zero threshold) counts in, relative to the
    /// lowest bucket, clamped into the range.
    #[inline]
    fn offset(&self, v: f64) -> usize {
        self.index(v)
            .clamp(self.lowest, self.highest)
            .abs_diff(self.lowest) as usize
    }

    /// The index of the bucket of `v` (positive, not NaN), `ceil(log2(v) * 2^schema)`,
    /// computed as Prometheus and its Go client do: from `v`'s binary exponent, and at a
    /// positive schema a search in the bounds of one power of two, without a logarithm
    /// (a `log2` and a `ceil` cost 76 instructions, this about 20), and exact at the
    /// bounds, where a logarithm can be one bucket off.
    #[inline]
    fn index(&self, v: f64) -> i32 {
        let bits = v.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        if biased == 0 || biased == 0x7ff {
            // Subnormal or infinite: the logarithm (`as` saturates).
            return (v.log2() * self.scale).ceil() as i32;
        }
        // v = fraction × 2^exponent, the fraction in [0.5, 1), as C's `frexp` splits it.
        let exponent = biased - 1022;
        let fraction = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3fe0_0000_0000_0000);
        if self.schema > 0 {
            // The first bound at or above the fraction.
            let within = self.octave.partition_point(|bound| *bound < fraction) as i32;
            within + (exponent - 1) * self.octave.len() as i32
        } else {
            // Buckets of 2^(2^-schema): the power of two's index, divided rounding up.
            let power = if fraction == 0.5 {
                exponent - 1
            } else {
                exponent
            };
            let shift = -i32::from(self.schema);
            (power + (1 << shift) - 1) >> shift
        }
    }
}

/// The bounds of the buckets within one power of two at a positive `schema`, scaled into
/// [0.5, 1): `2^(i / 2^schema - 1)` for `i` from 0 to `2^schema - 1`, Prometheus's
/// `nativeHistogramBounds`. Computed once per schema; empty for the others.
fn octave_bounds(schema: i8) -> &'static [f64] {
    static BOUNDS: [OnceLock<Box<[f64]>>; 8] = [const { OnceLock::new() }; 8];
    let Some(bounds) = usize::try_from(schema)
        .ok()
        .and_then(|schema| schema.checked_sub(1))
        .and_then(|slot| BOUNDS.get(slot))
    else {
        return &[];
    };
    bounds.get_or_init(|| {
        let len = 1u32 << schema;
        (0..len)
            .map(|i| (f64::from(i) / f64::from(len) - 1.0).exp2())
            .collect()
    })
}

/// A histogram with atomic, per-thread-sharded bucket counters.
///
/// Cloning gives another handle on the same counters, as with `prometheus-client`'s
/// metrics: register one clone, observe through another.
///
/// ```
/// use prometheus_client::encoding::text::encode;
/// use prometheus_client::registry::{Registry, Unit};
/// use tower_prometheus::{Buckets, Histogram};
///
/// let histogram = Histogram::new(Buckets::new([0.1, 1.0])?);
/// let mut registry = Registry::default();
/// registry.register_with_unit("job_duration", "Time spent in jobs", Unit::Seconds, histogram.clone());
///
/// histogram.observe(0.05);
/// histogram.observe(0.5);
/// histogram.observe(0.5);
///
/// let mut text = String::new();
/// encode(&mut text, &registry)?;
/// let expected = concat!(
///     "# HELP job_duration_seconds Time spent in jobs.\n",
///     "# TYPE job_duration_seconds histogram\n",
///     "# UNIT job_duration_seconds seconds\n",
///     "job_duration_seconds_sum 1.05\n",
///     "job_duration_seconds_count 3\n",
///     "job_duration_seconds_bucket{le=\"0.1\"} 1\n",
///     "job_duration_seconds_bucket{le=\"1.0\"} 3\n",
///     "job_duration_seconds_bucket{le=\"+Inf\"} 3\n",
///     "# EOF\n",
/// );
/// assert_eq!(text, expected);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Histogram {
    core: Arc<HistogramCore>,
}

impl Histogram {
    /// An empty histogram with these buckets.
    pub fn new(buckets: Buckets) -> Self {
        Self {
            core: Arc::new(HistogramCore::new(buckets)),
        }
    }

    /// Records one observation.
    ///
    /// `v` counts in the first bucket whose upper bound is at least `v`. `NaN` is
    /// ignored: it belongs to no bucket and would turn the sum into `NaN` for good.
    #[inline]
    pub fn observe(&self, v: f64) {
        self.core.observe(v);
    }

    /// The number of observations so far.
    pub fn count(&self) -> u64 {
        self.core.count()
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.core.sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.core.encode(&mut encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The counters of a histogram, without the shared handle: what the HTTP layer embeds.
///
/// Cells per shard: one per bucket bound, one for `+Inf`, one for the sum (`f64` bits);
/// with native buckets, then one for the zero bucket and one per native bucket.
pub(crate) struct HistogramCore {
    buckets: Buckets,
    native: Option<NativeBuckets>,
    cells: ShardedCells,
}

impl HistogramCore {
    pub(crate) fn new(buckets: Buckets) -> Self {
        Self::with_native(buckets, None)
    }

    pub(crate) fn with_native(buckets: Buckets, native: Option<NativeBuckets>) -> Self {
        let native_cells = native.map_or(0, |native| native.len() + 1);
        let cells = ShardedCells::new(buckets.bounds().len() + 2 + native_cells);
        Self {
            buckets,
            native,
            cells,
        }
    }

    #[inline]
    pub(crate) fn observe(&self, v: f64) {
        let _ = self.observe_at(crate::sharded::thread_shard(), v);
    }

    /// [`Self::observe`] for the thread numbered `thread`, looked up by the caller; the
    /// classic bucket `v` counted in (`None` for `NaN`).
    #[inline]
    pub(crate) fn observe_at(&self, thread: usize, v: f64) -> Option<usize> {
        if v.is_nan() {
            return None;
        }
        let bounds = self.buckets.bounds();
        // Linear search: durations and sizes mostly land in the first buckets.
        let bucket = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.cells
            .at(thread, bucket)
            .fetch_add(1, Ordering::Relaxed);
        if let Some(native) = &self.native {
            self.observe_native(thread, native, v);
        }
        let sum = self.cells.at(thread, bounds.len() + 1);
        // The cell belongs to this thread's shard, so the exchange almost never retries.
        let mut current = sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + v).to_bits();
            match sum.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        Some(bucket)
    }

    /// The native half of [`Self::observe_at`]: out of line, so that with native
    /// histograms off the observation stays as small as it was (inlined three times per
    /// request).
    #[inline(never)]
    fn observe_native(&self, thread: usize, native: &NativeBuckets, v: f64) {
        // The zero bucket, then the range's buckets.
        let zero = self.buckets.bounds().len() + 2;
        let cell = if v <= native.zero_threshold {
            zero
        } else {
            zero + 1 + native.offset(v)
        };
        self.cells.at(thread, cell).fetch_add(1, Ordering::Relaxed);
    }

    /// The number of classic buckets, `+Inf` included.
    pub(crate) fn classic_buckets(&self) -> usize {
        self.buckets.bounds().len() + 1
    }

    pub(crate) fn count(&self) -> u64 {
        (0..=self.buckets.bounds().len())
            .map(|bucket| self.cells.sum(bucket))
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn sum(&self) -> f64 {
        self.cells
            .shards(self.buckets.bounds().len() + 1)
            .map(|cell| f64::from_bits(cell.load(Ordering::Relaxed)))
            .sum()
    }

    /// Encodes the buckets as non-cumulative `(bound, count)` pairs, `+Inf` included
    /// (the OpenMetrics encoder of `prometheus-client` expects it explicitly). The count
    /// is the sum of the buckets read, so the two always agree within one scrape.
    pub(crate) fn encode(&self, encoder: &mut MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_with(&[], encoder)
    }

    /// Encodes this histogram and `others` added up, as one: their classic buckets (the
    /// bounds must be the same: those of `self` are written) and their sums; native
    /// buckets are this histogram's only.
    pub(crate) fn encode_with(
        &self,
        others: &[&HistogramCore],
        encoder: &mut MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let bounds = self.buckets.bounds();
        let bucket_sum = |bucket: usize| {
            others
                .iter()
                .map(|other| other.cells.sum(bucket))
                .fold(self.cells.sum(bucket), u64::wrapping_add)
        };
        let pairs = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(bucket, bound)| (bound, bucket_sum(bucket)));
        // Usual bucket counts fit on the stack: a scrape of many series allocates
        // nothing per histogram.
        let mut stack = [(0.0, 0); 32];
        let heap: Vec<(f64, u64)>;
        let pairs: &[(f64, u64)] = if bounds.len() < stack.len() {
            let mut n = 0;
            for (slot, pair) in stack.iter_mut().zip(pairs) {
                *slot = pair;
                n += 1;
            }
            &stack[..n]
        } else {
            heap = pairs.collect();
            &heap
        };
        let count = pairs.iter().fold(0u64, |acc, (_, n)| acc.wrapping_add(*n));
        let sum = self.sum() + others.iter().map(|other| other.sum()).sum::<f64>();
        let Some(native) = &self.native else {
            return encoder.encode_histogram::<NoLabelSet>(sum, count, pairs, None);
        };
        let zero = bounds.len() + 2;
        let (spans, deltas) = self.native_spans(native, zero + 1);
        encoder.encode_histogram_with_native::<NoLabelSet>(
            sum,
            count,
            pairs,
            None,
            NativeHistogram {
                schema: i32::from(native.schema),
                zero_threshold: native.zero_threshold,
                zero_count: self.cells.sum(zero),
                negative: NativeHistogramBuckets {
                    spans: &[],
                    deltas: &[],
                },
                positive: NativeHistogramBuckets {
                    spans: &spans,
                    deltas: &deltas,
                },
                created: None,
            },
        )
    }

    /// The non-empty native buckets as Prometheus' spans (offset from the end of the
    /// previous span, length) and deltas (each count minus the one before). Gaps of up
    /// to two empty buckets stay inside a span, as Go's client does: a span costs more
    /// bytes than two zero deltas.
    fn native_spans(&self, native: &NativeBuckets, first: usize) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::new();
        let (mut previous, mut next_index) = (0i64, 0i32);
        for offset in 0..native.len() {
            let count = self.cells.sum(first + offset) as i64;
            if count == 0 {
                continue;
            }
            let index = native.lowest + offset as i32;
            let gap = index - next_index;
            match spans.last_mut() {
                Some((_, len)) if gap <= 2 => {
                    for _ in 0..gap {
                        deltas.push(-previous);
                        previous = 0;
                    }
                    *len += gap as u32 + 1;
                }
                _ => spans.push((gap, 1)),
            }
            deltas.push(count - previous);
            previous = count;
            next_index = index + 1;
        }
        (spans, deltas)
    }
}

impl std::fmt::Debug for HistogramCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("buckets", &self.buckets.bounds())
            .field("count", &self.count())
            .field("sum", &self.sum())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_bounds() {
        assert!(Buckets::new([]).is_ok());
        assert_eq!(
            Buckets::new([1.0, f64::INFINITY]).map(|b| b.bounds().to_vec()),
            Ok(vec![1.0])
        );
        assert!(matches!(
            Buckets::new([f64::NAN]),
            Err(Error::InvalidBuckets(_))
        ));
        assert!(matches!(
            Buckets::new([f64::NEG_INFINITY, 1.0]),
            Err(Error::InvalidBuckets(_))
        ));
        assert!(matches!(
            Buckets::new([2.0, 1.0]),
            Err(Error::InvalidBuckets(_))
        ));
        assert!(Buckets::new([-1.0, 0.0, 1.0]).is_ok());
    }

    #[test]
    fn size_buckets_are_powers_of_four() {
        let buckets = Buckets::size_bytes();
        assert_eq!(buckets.bounds().len(), 11);
        assert_eq!(buckets.bounds()[1], 64.0);
        assert_eq!(buckets.bounds()[10], 16.0 * 1024.0 * 1024.0);
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let core = HistogramCore::new(Buckets::new([1.0, 2.0]).expect("valid"));
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, f64::NAN] {
            core.observe(v);
        }
        assert_eq!(core.cells.sum(0), 2, "0.5 and 1.0 (le is inclusive)");
        assert_eq!(core.cells.sum(1), 2);
        assert_eq!(core.cells.sum(2), 1, "+Inf");
        assert_eq!(core.count(), 5, "NaN is ignored");
        assert_eq!(core.sum(), 8.0);
    }

    #[test]
    fn native_buckets_validate_their_range() {
        let buckets = NativeBuckets::duration_seconds();
        // 2^-17 is a bucket boundary: the first bucket starts right above it.
        assert_eq!(buckets.lowest, -17 * 8 + 1);
        assert_eq!(buckets.highest, 7 * 8);
        assert!(NativeBuckets::new(-5, 1.0, 2.0).is_err());
        assert!(NativeBuckets::new(3, 0.0, 2.0).is_err());
        assert!(NativeBuckets::new(3, f64::NAN, 2.0).is_err());
        assert!(NativeBuckets::new(3, 1.0, 1.0).is_err());
        assert!(NativeBuckets::new(3, 1.0, f64::INFINITY).is_err());
        assert!(
            NativeBuckets::new(8, 1e-9, 1e9).is_err(),
            "too many buckets"
        );
        assert_eq!(NativeBuckets::new(-4, 1.0, 1e30).map(|b| b.len()), Ok(7));
    }

    /// Observations land where Prometheus puts them: bucket `i` is `(2^((i-1)/8), 2^(i/8)]`
    /// at schema 3; below the zero threshold in the zero bucket; above the range in the
    /// highest bucket.
    #[test]
    fn native_observations_land_in_prometheus_buckets() {
        let native = NativeBuckets::new(3, 2f64.powi(-10), 8.0).expect("valid");
        let core = HistogramCore::with_native(Buckets::new([1.0]).expect("valid"), Some(native));
        // 1.0 is the upper bound of bucket 0; just above, bucket 1; 2.0 the top of 8.
        for v in [1.0, 1.0001, 2.0, 0.0, -1.0, 2f64.powi(-10), 1e6] {
            core.observe(v);
        }
        let (spans, deltas) = core.native_spans(&native, 4);
        // Buckets 0, 1 (one each), 8 (one), 24 (the top, 8.0 = 2^3, holding 1e6).
        assert_eq!(spans, vec![(0, 2), (6, 1), (15, 1)]);
        assert_eq!(deltas, vec![1, 0, 0, 0]);
        assert_eq!(
            core.cells.sum(3),
            3,
            "0, -1 and the threshold itself: the zero bucket"
        );
        assert_eq!(core.count(), 7);
        // Short gaps stay inside a span.
        let core = HistogramCore::with_native(Buckets::new([]).expect("valid"), Some(native));
        for v in [1.0, 2f64.powf(3.0 / 8.0), 2f64.powf(3.0 / 8.0)] {
            core.observe(v);
        }
        let (spans, deltas) = core.native_spans(&native, 3);
        assert_eq!(spans, vec![(0, 4)]);
        assert_eq!(deltas, vec![1, -1, 0, 2]);
    }

    /// The index without a logarithm is `ceil(log2(v) * 2^schema)` at every schema:
    /// exactly at the bounds (each the top of its bucket), and between them.
    #[test]
    fn native_indexes_match_the_definition() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for schema in -4..=8i8 {
            // The range only clamps `offset`: `index` is tested over every normal number.
            let native = NativeBuckets::new(schema, 0.5, 1.0).expect("valid");
            let scale = 2f64.powi(i32::from(schema));
            for _ in 0..20_000 {
                // Any positive normal number, and the bucket it is in by the definition,
                // checked by the bounds around it (the logarithm alone can be off at them).
                let v = f64::from_bits(random() % 0x7fe0_0000_0000_0000 + 0x0010_0000_0000_0000);
                let index = native.index(v);
                let upper = (f64::from(index) / scale).exp2();
                let lower = (f64::from(index - 1) / scale).exp2();
                assert!(
                    lower < v && v <= upper || (v.log2() * scale).ceil() as i32 == index,
                    "schema {schema}: {v} in bucket {index}, ({lower}, {upper}]"
                );
            }
            // Powers of two, and at positive schemas every bound of an octave: each is
            // the top of its bucket, and the next number up is in the next bucket.
            for power in -20..20i32 {
                let base = 2f64.powi(power);
                let bounds: Vec<f64> = if schema > 0 {
                    native
                        .octave
                        .iter()
                        .map(|bound| bound * 2.0 * base)
                        .collect()
                } else {
                    vec![base]
                };
                for (i, bound) in bounds.iter().enumerate() {
                    let expected = if schema > 0 {
                        i as i32 + power * native.octave.len() as i32
                    } else {
                        // ceil(power / 2^-schema)
                        let shift = -i32::from(schema);
                        (power + (1 << shift) - 1) >> shift
                    };
                    assert_eq!(native.index(*bound), expected, "schema {schema}: {bound}");
                    let above = f64::from_bits(bound.to_bits() + 1);
                    let next = if schema > 0 || (power % (1 << -schema)) == 0 {
                        expected + 1
                    } else {
                        expected
                    };
                    assert_eq!(
                        native.index(above),
                        next,
                        "schema {schema}: just above {bound}"
                    );
                }
            }
        }
        // Subnormal and infinite values take the logarithm's path.
        let native = NativeBuckets::duration_seconds();
        assert_eq!(native.index(f64::INFINITY), i32::MAX);
        assert_eq!(native.index(5e-324), (5e-324f64.log2() * 8.0).ceil() as i32);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let histogram = Histogram::new(Buckets::duration_seconds());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let histogram = histogram.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        histogram.observe(f64::from(i % 20));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("observing does not panic");
        }
        assert_eq!(histogram.count(), 40_000);
        // 4 threads × 500 rounds × (0 + 1 + … + 19).
        assert_eq!(histogram.sum(), 4.0 * 500.0 * 190.0);
    }
}
