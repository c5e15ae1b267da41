//! Tokio runtime metrics, the Rust counterpart of Node's event-loop lag and handles;
//! see [`RuntimeCollector`].

mod lag;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use tokio::runtime::Handle;

use crate::error::Error;
use crate::histogram::{Buckets, HistogramCore};

/// The default resolution of the lag probe.
pub const DEFAULT_LAG_RESOLUTION: Duration = Duration::from_millis(10);

/// The metric families the collector can expose, with their unit suffixes, those of
/// `--cfg tokio_unstable` included.
pub(crate) const FAMILIES: &[&str] = &[
    "tokio_workers",
    "tokio_alive_tasks",
    "tokio_global_queue_depth",
    "tokio_worker_busy_seconds",
    "tokio_worker_parks",
    "tokio_event_loop_lag_seconds",
    "tokio_blocking_threads",
    "tokio_idle_blocking_threads",
    "tokio_blocking_queue_depth",
    "tokio_spawned_tasks",
    "tokio_task_poll_time_seconds",
];

/// Tokio runtime metrics: the Rust counterpart of Node's event-loop lag and handles.
///
/// | metric | type | meaning |
/// |---|---|---|
/// | `tokio_workers` | gauge | worker threads of the runtime |
/// | `tokio_alive_tasks` | gauge | tasks spawned and not finished (Node: active handles) |
/// | `tokio_global_queue_depth` | gauge | tasks waiting in the global (injection) queue |
/// | `tokio_worker_busy_seconds_total` | counter | time workers spent polling tasks, summed over workers |
/// | `tokio_worker_parks_total` | counter | times workers parked (went idle), summed over workers |
/// | `tokio_event_loop_lag_seconds` | histogram | how long a ready task waits before it is polled |
///
/// Counters and gauges are read from [`RuntimeMetrics`](tokio::runtime::RuntimeMetrics)
/// at scrape time: cumulative values, so several scrapers see consistent counters. The
/// lag histogram is fed continuously by a probe (see below), not by scrapes, so it
/// measures the service rather than `/metrics`.
///
/// With `RUSTFLAGS="--cfg tokio_unstable"`, the collector adds what tokio exposes there:
/// `tokio_blocking_threads`, `tokio_idle_blocking_threads`, `tokio_blocking_queue_depth`,
/// `tokio_spawned_tasks_total` and, when the runtime was built with
/// `enable_metrics_poll_time_histogram()`, the `tokio_task_poll_time_seconds` histogram.
///
/// # The lag probe
///
/// A small thread (64 KiB of stack) stamps the time every resolution (default 10 ms) and
/// hands the stamp to a task on the runtime, which records how long the stamp waited to
/// be polled. The thread keeps time while the runtime is stalled, so a stall that
/// swallows k periods records k samples (up to 1,024), the oldest as long as the stall,
/// instead of one. The probe stops when the collector is dropped (with [`Metrics`]) or
/// when the runtime shuts down.
///
/// What it costs at rest is the wake-ups: at the default resolution the thread and the
/// runtime wake 100 times a second. On a 2-vCPU virtual machine, an otherwise idle
/// current-thread runtime used 7 to 8 ms of CPU per second with the probe (0.7–0.8% of
/// one core) against 0.03 ms without; at 100 ms resolution, 0.9 ms per second (0.09%).
/// A plain Tokio task sleeping 10 ms in a loop costs 5.3 ms per second on the same
/// machine: the price is the runtime's wake-up, which any 10 ms sampler pays. Measure
/// yours with `cargo run --release --example probe_cost`, and raise
/// [`lag_resolution`](crate::MetricsBuilder::lag_resolution) to pay less. The probe
/// adds nothing to the request path.
///
/// [`Metrics`]: crate::Metrics
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::RuntimeCollector;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_prometheus::Error> {
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(RuntimeCollector::new()?));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RuntimeCollector {
    resolution: Duration,
    lag: Arc<HistogramCore>,
    attached: OnceLock<Attached>,
}

#[derive(Debug)]
struct Attached {
    handle: Handle,
    _probe: Option<lag::Probe>,
}

impl RuntimeCollector {
    /// A collector of the current runtime, with the lag probe at the default
    /// resolution (10 ms). Outside a Tokio runtime, [`Error::NoRuntime`].
    pub fn new() -> Result<Self, Error> {
        Self::with_lag_resolution(DEFAULT_LAG_RESOLUTION)
    }

    /// A collector of the current runtime, with the lag probe at this resolution.
    /// Outside a Tokio runtime, [`Error::NoRuntime`]; a zero resolution is
    /// [`Error::InvalidLagResolution`].
    pub fn with_lag_resolution(resolution: Duration) -> Result<Self, Error> {
        let collector = Self::detached(resolution)?;
        let handle = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        collector.attach(handle);
        Ok(collector)
    }

    /// A collector that attaches to the runtime it is first used in: now if there is
    /// one, else at the first scrape (which runs inside the runtime serving it).
    pub(crate) fn attach_when_possible(resolution: Duration) -> Result<Self, Error> {
        let collector = Self::detached(resolution)?;
        if let Ok(handle) = Handle::try_current() {
            collector.attach(handle);
        }
        Ok(collector)
    }

    fn detached(resolution: Duration) -> Result<Self, Error> {
        if resolution.is_zero() {
            return Err(Error::InvalidLagResolution);
        }
        Ok(Self {
            resolution,
            lag: Arc::new(HistogramCore::new(lag_buckets())),
            attached: OnceLock::new(),
        })
    }

    fn attach(&self, handle: Handle) -> &Attached {
        self.attached.get_or_init(|| Attached {
            _probe: lag::Probe::start(&handle, self.lag.clone(), self.resolution),
            handle,
        })
    }

    fn attached(&self) -> Option<&Attached> {
        match self.attached.get() {
            Some(attached) => Some(attached),
            None => Handle::try_current().ok().map(|handle| self.attach(handle)),
        }
    }
}

/// Lag buckets, in seconds: 100 µs to 10 s.
fn lag_buckets() -> Buckets {
    Buckets::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
    .expect("constant bounds are increasing")
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: usize,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&(value.min(i64::MAX as usize) as i64))
}

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(attached) = self.attached() else {
            return Ok(());
        };
        let metrics = attached.handle.metrics();
        let workers = metrics.num_workers();
        gauge(
            &mut encoder,
            "tokio_workers",
            "Number of worker threads of the Tokio runtime.",
            workers,
        )?;
        gauge(
            &mut encoder,
            "tokio_alive_tasks",
            "Number of tasks spawned and not yet finished.",
            metrics.num_alive_tasks(),
        )?;
        gauge(
            &mut encoder,
            "tokio_global_queue_depth",
            "Number of tasks waiting in the runtime's global queue.",
            metrics.global_queue_depth(),
        )?;
        #[cfg(target_has_atomic = "64")]
        {
            let busy: f64 = (0..workers)
                .map(|worker| metrics.worker_total_busy_duration(worker).as_secs_f64())
                .sum();
            encoder
                .encode_descriptor(
                    "tokio_worker_busy",
                    "Time the workers spent polling tasks, summed over workers, in seconds.",
                    Some(&Unit::Seconds),
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, _, f64>(&busy, None)?;
            let parks = (0..workers)
                .map(|worker| metrics.worker_park_count(worker))
                .fold(0u64, u64::saturating_add);
            encoder
                .encode_descriptor(
                    "tokio_worker_parks",
                    "Times the workers parked (went idle), summed over workers.",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, _, u64>(&parks, None)?;
        }
        #[cfg(tokio_unstable)]
        unstable::encode(&mut encoder, &metrics)?;
        let mut lag = encoder.encode_descriptor(
            "tokio_event_loop_lag",
            "Time a ready task waited before the runtime polled it, sampled by a probe task, in seconds.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.lag.encode(&mut lag)
    }
}

#[cfg(tokio_unstable)]
mod unstable {
    use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::Unit;
    use tokio::runtime::RuntimeMetrics;

    use super::gauge;

    pub(super) fn encode(
        encoder: &mut DescriptorEncoder<'_>,
        metrics: &RuntimeMetrics,
    ) -> Result<(), std::fmt::Error> {
        gauge(
            encoder,
            "tokio_blocking_threads",
            "Number of threads of the blocking pool.",
            metrics.num_blocking_threads(),
        )?;
        gauge(
            encoder,
            "tokio_idle_blocking_threads",
            "Number of idle threads of the blocking pool.",
            metrics.num_idle_blocking_threads(),
        )?;
        gauge(
            encoder,
            "tokio_blocking_queue_depth",
            "Number of tasks waiting for a thread of the blocking pool.",
            metrics.blocking_queue_depth(),
        )?;
        encoder
            .encode_descriptor(
                "tokio_spawned_tasks",
                "Number of tasks spawned since the runtime started.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&metrics.spawned_tasks_count(), None)?;
        if !metrics.poll_time_histogram_enabled() {
            return Ok(());
        }
        let workers = metrics.num_workers();
        let buckets = metrics.poll_time_histogram_num_buckets();
        let mut pairs = Vec::with_capacity(buckets);
        let (mut count, mut sum) = (0u64, 0.0f64);
        for bucket in 0..buckets {
            let range = metrics.poll_time_histogram_bucket_range(bucket);
            let n = (0..workers)
                .map(|worker| metrics.poll_time_histogram_bucket_count(worker, bucket))
                .fold(0u64, u64::saturating_add);
            let upper = if bucket + 1 == buckets {
                f64::INFINITY
            } else {
                range.end.as_secs_f64()
            };
            // tokio keeps no sum: it is estimated from the middle of each bucket (the
            // lower bound for the last, unbounded one).
            let middle = if upper.is_finite() {
                (range.start.as_secs_f64() + upper) / 2.0
            } else {
                range.start.as_secs_f64()
            };
            sum += middle * n as f64;
            count = count.saturating_add(n);
            pairs.push((upper, n));
        }
        encoder
            .encode_descriptor(
                "tokio_task_poll_time",
                "Time tasks took to poll, from tokio's poll-time histogram (sum estimated from bucket middles), in seconds.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &pairs, None)
    }
}
