//! Per-route task metrics (feature `task-metrics`): which route blocks the runtime.
//!
//! With [`HttpMetricsBuilder::task_monitors`](super::HttpMetricsBuilder::task_monitors)
//! on, the inner service's future of each recorded request (the handler, up to the
//! response head) is instrumented with the [`tokio_metrics::TaskMonitor`] of its route:
//! one monitor per route id, created on the route's first request, in a slice indexed by
//! the id, so the route table's cardinality limit bounds them too. Requests without a
//! route share one monitor (id 0), and so do routes beyond the limit (the overflow
//! route). Excluded requests are not instrumented.
//!
//! A scrape reads each monitor's cumulative totals ([`TaskMonitor::cumulative`]) and
//! publishes them as counters labelled with the route ([`Collector`] below).
//!
//! The instrumented future itself is the engine's (`record/tasks.rs`). Without the
//! feature, [`monitor`] gives none: the layer's default path is unchanged.

#[cfg(feature = "task-metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "task-metrics"))]
pub(crate) use off::*;

#[cfg(not(feature = "task-metrics"))]
mod off {
    use super::super::family::Route;
    use super::super::layer::Recorders;
    use crate::record::Monitor;

    /// The task monitor of a request on `route`: none without the feature.
    #[inline(always)]
    pub(crate) fn monitor(_recorders: &Recorders, _route: Route) -> Option<Monitor> {
        None
    }
}

#[cfg(feature = "task-metrics")]
mod on {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::Unit;
    use tokio_metrics::{TaskMetrics, TaskMonitorCoreBuilder};

    use super::super::family::{OVERFLOW_ROUTE, Route, ServerRequests};
    use super::super::labels::Names;
    use super::super::layer::Recorders;
    use crate::record::{Monitor, OVERFLOW_LABEL, Recorder};

    /// The families the task metrics expose, with their unit suffixes, without `_total`.
    pub(crate) const FAMILIES: &[&str] = &[
        "tokio_task_polls",
        "tokio_task_poll_seconds",
        "tokio_task_slow_polls",
        "tokio_task_slow_poll_seconds",
        "tokio_task_scheduled",
        "tokio_task_scheduled_seconds",
        "tokio_task_long_delays",
        "tokio_task_long_delay_seconds",
        "tokio_task_idles",
        "tokio_task_idle_seconds",
    ];

    /// The task monitors of a layer, one per route id.
    #[derive(Debug)]
    pub(crate) struct Monitors {
        builder: TaskMonitorCoreBuilder,
        /// Indexed by route id (0: no route), the last one for the overflow route.
        by_route: Box<[OnceLock<Monitor>]>,
    }

    impl Monitors {
        /// Monitors for route ids up to `max_route_id`, with these thresholds (`None`:
        /// tokio-metrics' defaults).
        pub(crate) fn new(
            max_route_id: usize,
            slow_poll: Option<Duration>,
            long_delay: Option<Duration>,
        ) -> Self {
            let mut builder = TaskMonitorCoreBuilder::new();
            if let Some(threshold) = slow_poll {
                builder = builder.with_slow_poll_threshold(threshold);
            }
            if let Some(threshold) = long_delay {
                builder = builder.with_long_delay_threshold(threshold);
            }
            Self {
                builder,
                // Ids 0 to `max_route_id`, and the overflow route.
                by_route: (0..max_route_id.saturating_add(2))
                    .map(|_| OnceLock::new())
                    .collect(),
            }
        }

        /// The slot of a route: that of its id, the last one for the overflow route (and
        /// for an id beyond the table's, which the route table never gives).
        #[inline]
        fn slot(&self, route: Route) -> &OnceLock<Monitor> {
            let last = self.by_route.len() - 1;
            let index = if route.id == OVERFLOW_ROUTE {
                last
            } else {
                (route.id as usize).min(last)
            };
            &self.by_route[index]
        }

        /// The monitor of a route, made on its first request.
        #[inline]
        fn of(&self, route: Route) -> &Monitor {
            self.slot(route)
                .get_or_init(|| Arc::new(self.builder.clone().build()))
        }
    }

    /// The task monitor of a recorded request on `route`, when the layer has them.
    #[inline]
    pub(crate) fn monitor(recorders: &Recorders, route: Route) -> Option<Monitor> {
        Some(recorders.tasks.as_ref()?.of(route).clone())
    }

    /// One counter family: its descriptor, and the value it takes from a monitor.
    struct CounterFamily {
        name: &'static str,
        help: &'static str,
        unit: Option<Unit>,
        value: fn(&TaskMetrics) -> Value,
    }

    enum Value {
        Count(u64),
        Seconds(Duration),
    }

    const COUNTERS: &[CounterFamily] = &[
        CounterFamily {
            name: "tokio_task_polls",
            help: "Polls of HTTP request futures (the handler, up to the response head), by route.",
            unit: None,
            value: |m| Value::Count(m.total_poll_count),
        },
        CounterFamily {
            name: "tokio_task_poll",
            help: "Time spent polling HTTP request futures, by route: time the handler held its worker thread, in seconds.",
            unit: Some(Unit::Seconds),
            value: |m| Value::Seconds(m.total_poll_duration),
        },
        CounterFamily {
            name: "tokio_task_slow_polls",
            help: "Polls of HTTP request futures that took at least the slow-poll threshold, by route.",
            unit: None,
            value: |m| Value::Count(m.total_slow_poll_count),
        },
        CounterFamily {
            name: "tokio_task_slow_poll",
            help: "Time spent in slow polls of HTTP request futures, by route, in seconds.",
            unit: Some(Unit::Seconds),
            value: |m| Value::Seconds(m.total_slow_poll_duration),
        },
        CounterFamily {
            name: "tokio_task_scheduled",
            help: "Times HTTP request futures were woken and then polled, by route.",
            unit: None,
            value: |m| Value::Count(m.total_scheduled_count),
        },
        CounterFamily {
            name: "tokio_task_scheduled",
            help: "Scheduling delay of HTTP request futures, by route: time from a wake-up to the next poll, in seconds.",
            unit: Some(Unit::Seconds),
            value: |m| Value::Seconds(m.total_scheduled_duration),
        },
        CounterFamily {
            name: "tokio_task_long_delays",
            help: "Scheduling delays of HTTP request futures of at least the long-delay threshold, by route.",
            unit: None,
            value: |m| Value::Count(m.total_long_delay_count),
        },
        CounterFamily {
            name: "tokio_task_long_delay",
            help: "Time HTTP request futures spent in long scheduling delays, by route, in seconds.",
            unit: Some(Unit::Seconds),
            value: |m| Value::Seconds(m.total_long_delay_duration),
        },
        CounterFamily {
            name: "tokio_task_idles",
            help: "Times HTTP request futures went idle (waiting on I/O, a timer or another task) and were woken, by route.",
            unit: None,
            value: |m| Value::Count(m.total_idled_count),
        },
        CounterFamily {
            name: "tokio_task_idle",
            help: "Time HTTP request futures spent idle (from the end of a poll to the next wake-up), by route, in seconds.",
            unit: Some(Unit::Seconds),
            value: |m| Value::Seconds(m.total_idle_duration),
        },
    ];

    /// Publishes the monitors of a layer at scrape time.
    #[derive(Debug)]
    pub(crate) struct Collector {
        pub(crate) recorder: Arc<Recorder<ServerRequests>>,
        pub(crate) monitors: Arc<Monitors>,
    }

    /// Which series a monitor's values go to.
    enum Series<'a> {
        NoRoute,
        Route(&'a str),
        Overflow,
    }

    impl prometheus_client::collector::Collector for Collector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            let family = &self.recorder.family;
            let names: &Names = family.names;
            let last = self.monitors.by_route.len() - 1;
            // The route templates by id (excluded routes have none of their own).
            let mut templates: Vec<Option<&str>> = vec![None; last];
            for (name, route) in family.routes.iter().filter(|(_, r)| !r.excluded) {
                if let Some(slot) = templates.get_mut(route.id as usize) {
                    *slot = Some(name);
                }
            }
            // Each monitor read once per scrape, in route id order.
            let mut read: Vec<(Series<'_>, TaskMetrics)> = Vec::new();
            for (id, slot) in self.monitors.by_route.iter().enumerate() {
                let Some(monitor) = slot.get() else { continue };
                let series = match (id, templates.get(id).copied().flatten()) {
                    (0, _) => Series::NoRoute,
                    (id, _) if id == last => Series::Overflow,
                    (_, Some(template)) => Series::Route(template),
                    // A monitor whose route is not in the table: never made.
                    (_, None) => continue,
                };
                read.push((series, monitor.cumulative()));
            }
            if read.is_empty() {
                return Ok(());
            }
            for family in COUNTERS {
                let mut metric = encoder.encode_descriptor(
                    family.name,
                    family.help,
                    family.unit.as_ref(),
                    MetricType::Counter,
                )?;
                for (series, metrics) in &read {
                    let labels: &[(&str, &str)] = match series {
                        Series::NoRoute => &[],
                        Series::Route(template) => &[(names.route, template)],
                        Series::Overflow => &[(OVERFLOW_LABEL, "true")],
                    };
                    let mut encoder = metric.encode_family(&labels)?;
                    match (family.value)(metrics) {
                        Value::Count(n) => {
                            encoder.encode_counter::<NoLabelSet, _, u64>(&n, None)?
                        }
                        Value::Seconds(d) => {
                            encoder.encode_counter::<NoLabelSet, _, f64>(&d.as_secs_f64(), None)?
                        }
                    }
                }
            }
            Ok(())
        }
    }
}
