//! The scrape side: the recorder's series and gauges as Prometheus metric families.
//!
//! A scrape reads the tables requests record into without a lock that requests wait
//! for: series are written once and their counters are atomics, so what it encodes is
//! each counter as it was when read.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::family::ServerRequests;
use super::labels::{ActiveLabels, SeriesKey, SeriesLabels};
use crate::exemplar::ExemplarSlot;
use crate::exemplar::splice::{self, FamilyExemplars};
use crate::histogram::HistogramCore;
use crate::record::{CallFamily, Method, OverflowLabels, Recorder, Series, UrlScheme};

/// One histogram family: its descriptor, and which histogram of a series it encodes.
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    unit: Unit,
    field: fn(&Series) -> Option<&HistogramCore>,
}

/// The families of a recorder of HTTP requests served.
pub(super) fn encode(
    recorder: &Recorder<ServerRequests>,
    mut encoder: DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let requests = &recorder.family;
    let names = requests.names;
    // Sorted by key: the route id is in the high bits, so series come by route.
    let series = recorder.sorted_series();
    let routes = requests.route_names();
    let errors = recorder.error_names();

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
    let overflow = &recorder.overflow;
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
        // The duration's exemplars, for the exporter that encodes (`exemplar/splice.rs`).
        let mut exemplars =
            (name == names.duration && recorder.histograms.exemplars && splice::is_capturing())
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
            let key = SeriesKey(*key);
            let labels = SeriesLabels::new(
                key,
                names,
                routes.get(key.route() as usize).copied().flatten(),
                errors.get(usize::from(key.error())).copied().flatten(),
                requests.grouped_status,
            );
            histogram.encode(&mut family.encode_family(&labels)?)?;
            keep(s);
        }
        if let Some(histogram) = field(overflow).filter(|_| !overflow.is_empty()) {
            histogram.encode(&mut family.encode_family(&OverflowLabels)?)?;
            keep(overflow);
        }
        if let Some(exemplars) = exemplars {
            splice::leave(exemplars);
        }
    }

    if (0..ServerRequests::ACTIVE_SLOTS).any(|slot| recorder.active_seen(slot)) {
        let mut family = encoder.encode_descriptor(
            names.active,
            "Number of HTTP server requests in flight.",
            None,
            MetricType::Gauge,
        )?;
        for method in 0..Method::COUNT {
            let slots = method * UrlScheme::COUNT..(method + 1) * UrlScheme::COUNT;
            let gauges = slots.filter(|slot| recorder.active_seen(*slot));
            if names.otel_labels {
                for slot in gauges {
                    let labels = ActiveLabels {
                        names,
                        method: Method::from_index(method),
                        scheme: Some(UrlScheme::from_index(slot)),
                    };
                    let value = recorder.active(slot);
                    family.encode_family(&labels)?.encode_gauge(&value)?;
                }
            } else {
                let mut gauges = gauges.peekable();
                if gauges.peek().is_none() {
                    continue;
                }
                let value = gauges.map(|slot| recorder.active(slot)).sum::<i64>();
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
