//! The scrape side: the recorder's series and gauges as Prometheus metric families.
//!
//! A scrape reads the tables requests record into without a lock that requests wait
//! for: series are written once and their counters are atomics, so what it encodes is
//! each counter as it was when read.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::exemplar::{self, ExemplarSlot, FamilyExemplars};
use super::labels::{ActiveLabels, Method, OverflowLabels, SeriesKey, SeriesLabels, UrlScheme};
use super::recorder::{Recorder, Series};
use crate::histogram::HistogramCore;

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
        // Sorted by key: the route id is in the high bits, so series come by route.
        let mut series: Vec<(SeriesKey, &Series)> =
            self.series.iter().map(|(key, s)| (*key, s)).collect();
        series.sort_unstable_by_key(|(key, _)| *key);
        let mut routes: Vec<Option<&str>> = Vec::new();
        // Excluded routes have no series (and no id of their own).
        for (name, route) in self.routes.iter().filter(|(_, route)| !route.excluded) {
            let id = route.id as usize;
            if routes.len() <= id {
                routes.resize(id + 1, None);
            }
            routes[id] = Some(name);
        }
        let mut errors: Vec<Option<&str>> = Vec::new();
        for (name, id) in self.errors.iter() {
            let id = usize::from(*id);
            if errors.len() <= id {
                errors.resize(id + 1, None);
            }
            errors[id] = Some(name);
        }

        let histograms = [
            HistogramFamily {
                name: names.duration,
                help: "Duration of HTTP server requests, until the response body ended.",
                unit: Unit::Seconds,
                field: |s| Some(&s.duration),
            },
            HistogramFamily {
                name: names.request_size,
                help: "Size of HTTP server request bodies, in bytes.",
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
        let overflow = &self.overflow;
        for HistogramFamily {
            name,
            help,
            unit,
            field,
        } in histograms
        {
            if field(overflow).is_none() || (series.is_empty() && overflow.is_empty()) {
                continue;
            }
            let mut family =
                encoder.encode_descriptor(name, help, Some(&unit), MetricType::Histogram)?;
            // The duration's exemplars, for the exporter that encodes (see `exemplar.rs`).
            let mut exemplars = (name == names.duration
                && self.config.exemplars.is_some()
                && exemplar::is_capturing())
            .then(|| FamilyExemplars {
                name: format!("{name}_{}", unit.as_str()),
                buckets: overflow.duration.classic_buckets(),
                metrics: Vec::with_capacity(series.len() + 1),
            });
            let mut keep = |s: &Series| {
                if let Some(exemplars) = exemplars.as_mut() {
                    let slots = s.exemplars.as_deref().unwrap_or_default();
                    exemplars
                        .metrics
                        .push(slots.iter().map(ExemplarSlot::read).collect());
                }
            };
            for (key, s) in &series {
                let Some(histogram) = field(s) else { continue };
                let labels = SeriesLabels::new(
                    *key,
                    names,
                    routes.get(key.route() as usize).copied().flatten(),
                    errors.get(usize::from(key.error())).copied().flatten(),
                    self.config.grouped_status,
                );
                histogram.encode(&mut family.encode_family(&labels)?)?;
                keep(s);
            }
            if let Some(histogram) = field(overflow).filter(|_| !overflow.is_empty()) {
                histogram.encode(&mut family.encode_family(&OverflowLabels)?)?;
                keep(overflow);
            }
            if let Some(exemplars) = exemplars {
                exemplar::leave(exemplars);
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
                let slots = method * UrlScheme::COUNT..(method + 1) * UrlScheme::COUNT;
                let gauges = slots.filter(|slot| self.active_seen[*slot].load(Ordering::Relaxed));
                if names.otel_labels {
                    for slot in gauges {
                        let labels = ActiveLabels {
                            names,
                            method: Method::from_index(method),
                            scheme: Some(UrlScheme::from_index(slot)),
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
