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

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
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
/// Cells per shard: one per bucket bound, one for `+Inf`, one for the sum (`f64` bits).
pub(crate) struct HistogramCore {
    buckets: Buckets,
    cells: ShardedCells,
}

impl HistogramCore {
    pub(crate) fn new(buckets: Buckets) -> Self {
        let cells = ShardedCells::new(buckets.bounds().len() + 2);
        Self { buckets, cells }
    }

    #[inline]
    pub(crate) fn observe(&self, v: f64) {
        self.observe_at(crate::sharded::thread_shard(), v);
    }

    /// [`Self::observe`] for the thread numbered `thread`, looked up by the caller.
    #[inline]
    pub(crate) fn observe_at(&self, thread: usize, v: f64) {
        if v.is_nan() {
            return;
        }
        let bounds = self.buckets.bounds();
        // Linear search: durations and sizes mostly land in the first buckets.
        let bucket = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.cells
            .at(thread, bucket)
            .fetch_add(1, Ordering::Relaxed);
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
        let bounds = self.buckets.bounds();
        let pairs = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(bucket, bound)| (bound, self.cells.sum(bucket)));
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
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, pairs, None)
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
