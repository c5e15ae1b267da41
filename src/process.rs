//! Process metrics: CPU time, memory, file descriptors, threads, start time; see
//! [`ProcessCollector`].

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// The metric families the collector can expose, with their unit suffixes.
pub(crate) const FAMILIES: &[&str] = &[
    "process_cpu_user_seconds",
    "process_cpu_system_seconds",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_threads",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
];

/// Process metrics: CPU time, memory, file descriptors, threads, start time.
///
/// Read from `/proc/self` at scrape time, so every scrape sees current values and
/// nothing runs between scrapes. On a platform without `/proc` (anything but Linux),
/// the collector writes nothing; it never fails a scrape. A file that cannot be read
/// (a hardened container, a race with the kernel) leaves out the metrics it holds and
/// keeps the others.
///
/// | metric | type | meaning |
/// |---|---|---|
/// | `process_cpu_user_seconds_total` | counter | CPU time spent in user mode |
/// | `process_cpu_system_seconds_total` | counter | CPU time spent in the kernel |
/// | `process_cpu_seconds_total` | counter | user + system CPU time |
/// | `process_resident_memory_bytes` | gauge | resident set size |
/// | `process_virtual_memory_bytes` | gauge | virtual memory size |
/// | `process_open_fds` | gauge | open file descriptors |
/// | `process_max_fds` | gauge | the soft limit of open file descriptors |
/// | `process_threads` | gauge | OS threads of the process |
/// | `process_start_time_seconds` | gauge | start time, seconds since the Unix epoch |
///
/// CPU times are `f64` seconds at the kernel's clock-tick resolution (10 ms on usual
/// kernels), not truncated to whole seconds, so `rate()` over them is meaningful.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::ProcessCollector;
///
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(ProcessCollector::new()));
/// ```
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct ProcessCollector;

impl ProcessCollector {
    /// A collector of the calling process.
    pub fn new() -> Self {
        Self
    }
}

impl Collector for ProcessCollector {
    #[cfg(target_os = "linux")]
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        linux::encode(encoder)
    }

    #[cfg(not(target_os = "linux"))]
    fn encode(&self, _encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use procfs::process::{LimitValue, Process};
    use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::Unit;

    pub(super) fn encode(mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Ok(process) = Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = process.stat() {
            let ticks = procfs::ticks_per_second().max(1) as f64;
            let user = stat.utime as f64 / ticks;
            let system = stat.stime as f64 / ticks;
            let counters = [
                (
                    "process_cpu_user",
                    "Total user CPU time spent, in seconds.",
                    user,
                ),
                (
                    "process_cpu_system",
                    "Total system CPU time spent, in seconds.",
                    system,
                ),
                (
                    "process_cpu",
                    "Total user and system CPU time spent, in seconds.",
                    user + system,
                ),
            ];
            for (name, help, seconds) in counters {
                encoder
                    .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Counter)?
                    .encode_counter::<NoLabelSet, _, f64>(&seconds, None)?;
            }
            let rss = stat.rss.saturating_mul(procfs::page_size());
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size, in bytes.",
                Some(Unit::Bytes),
                rss as i64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory",
                "Virtual memory size, in bytes.",
                Some(Unit::Bytes),
                stat.vsize as i64,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                None,
                stat.num_threads,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = boot as f64 + stat.starttime as f64 / ticks;
                encoder
                    .encode_descriptor(
                        "process_start_time",
                        "Start time of the process since the Unix epoch, in seconds.",
                        Some(&Unit::Seconds),
                        MetricType::Gauge,
                    )?
                    .encode_gauge(&start)?;
            }
        }
        if let Ok(open) = process.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                open as i64,
            )?;
        }
        if let Ok(limits) = process.limits() {
            if let LimitValue::Value(max) = limits.max_open_files.soft_limit {
                gauge(
                    &mut encoder,
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    None,
                    max.min(i64::MAX as u64) as i64,
                )?;
            }
        }
        Ok(())
    }

    fn gauge(
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        value: i64,
    ) -> Result<(), std::fmt::Error> {
        encoder
            .encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?
            .encode_gauge(&value)
    }
}
