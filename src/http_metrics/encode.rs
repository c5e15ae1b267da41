//! The scrape side: the recorder's series and gauges as Prometheus metric families.
//!
//! A scrape reads the tables requests record into without a lock that requests wait
//! for: series are written once and their counters are atomics, so what it encodes is
//! each counter as it was when read.

use std::collections::BTreeMap;

use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::family::ServerRequests;
use super::labels::{ActiveLabels, SeriesKey, SeriesLabels};
use crate::exemplar::splice::Leaving;
use crate::histogram::HistogramCore;
use crate::record::{ActiveGauges, Method, OverflowLabels, Recorder, Series, UrlScheme};

/// One histogram family: its descriptor, and which histogram of a series it encodes.
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    field: fn(&Series) -> Option<&HistogramCore>,
    /// Whether its series are by method and route only (`Names::by_endpoint` sizes).
    by_endpoint: bool,
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
    let labels = |key: SeriesKey| {
        SeriesLabels::new(
            key,
            names,
            routes.get(key.route() as usize).copied().flatten(),
            errors.get(usize::from(key.error())).copied().flatten(),
            requests.grouped_status,
        )
    };
    let size_unit = || names.size_unit.then_some(Unit::Bytes);

    let histograms = [
        HistogramFamily {
            name: names.duration,
            help: "Duration of HTTP server requests, until the response body ended.",
            unit: Some(Unit::Seconds),
            field: |s| Some(&s.duration),
            by_endpoint: false,
        },
        HistogramFamily {
            name: names.request_size,
            help: "Size of HTTP server request bodies, in bytes.",
            unit: size_unit(),
            field: |s| s.request_size.as_ref(),
            by_endpoint: names.by_endpoint,
        },
        HistogramFamily {
            name: names.response_size,
            help: "Size of HTTP server response bodies, in bytes sent.",
            unit: size_unit(),
            field: |s| s.response_size.as_ref(),
            by_endpoint: names.by_endpoint,
        },
    ];
    let overflow = &recorder.overflow;
    let recorded = !(series.is_empty() && overflow.is_empty());
    for HistogramFamily {
        name,
        help,
        unit,
        field,
        by_endpoint,
    } in histograms
    {
        if field(overflow).is_none() || !recorded {
            continue;
        }
        let mut family =
            encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Histogram)?;
        if by_endpoint {
            encode_by_endpoint(&series, overflow, field, &mut family, |route, method| {
                ActiveLabels {
                    names,
                    method,
                    scheme: None,
                    route: routes.get(route as usize).copied().flatten(),
                    overflow: false,
                }
            })?;
            continue;
        }
        // The duration's exemplars, for the exporter that encodes (`exemplar/splice.rs`).
        let mut exemplars = Leaving::new(
            name == names.duration && recorder.histograms.exemplars,
            || match unit.as_ref() {
                Some(unit) => format!("{name}_{}", unit.as_str()),
                None => name.to_owned(),
            },
            overflow.duration.classic_buckets(),
            series.len() + 1,
        );
        for (key, s) in &series {
            let Some(histogram) = field(s) else { continue };
            histogram.encode(&mut family.encode_family(&labels(SeriesKey(*key)))?)?;
            exemplars.keep(s.exemplars.as_deref());
        }
        if let Some(histogram) = field(overflow).filter(|_| !overflow.is_empty()) {
            histogram.encode(&mut family.encode_family(&OverflowLabels)?)?;
            exemplars.keep(overflow.exemplars.as_deref());
        }
        exemplars.leave();
    }

    // The request counter of the naming, when it has one: the duration's counts, read
    // here rather than counted per request.
    if let Some(name) = names.requests.filter(|_| recorded) {
        let mut family = encoder.encode_descriptor(
            name,
            "HTTP server requests finished (the duration histogram's count).",
            None,
            MetricType::Counter,
        )?;
        for (key, s) in &series {
            family
                .encode_family(&labels(SeriesKey(*key)))?
                .encode_counter::<NoLabelSet, _, u64>(&s.duration.count(), None)?;
        }
        if !overflow.is_empty() {
            family
                .encode_family(&OverflowLabels)?
                .encode_counter::<NoLabelSet, _, u64>(&overflow.duration.count(), None)?;
        }
    }

    encode_active(recorder, &routes, encoder)
}

/// A size histogram by method and route: the series of each pair (one per status)
/// added up, then the overflow series.
fn encode_by_endpoint<'a>(
    series: &[(crate::record::Key, &'a Series)],
    overflow: &Series,
    field: fn(&Series) -> Option<&HistogramCore>,
    family: &mut MetricEncoder<'_>,
    labels: impl Fn(u32, Method) -> ActiveLabels<'a>,
) -> Result<(), std::fmt::Error> {
    let mut by_endpoint: BTreeMap<(u32, usize), Vec<&HistogramCore>> = BTreeMap::new();
    for (key, s) in series {
        let key = SeriesKey(*key);
        if let Some(histogram) = field(s) {
            by_endpoint
                .entry((key.route(), key.method() as usize))
                .or_default()
                .push(histogram);
        }
    }
    for ((route, method), histograms) in &by_endpoint {
        if let Some((first, others)) = histograms.split_first() {
            let labels = labels(*route, Method::from_index(*method));
            first.encode_with(others, &mut family.encode_family(&labels)?)?;
        }
    }
    if let Some(histogram) = field(overflow).filter(|_| !overflow.is_empty()) {
        histogram.encode(&mut family.encode_family(&OverflowLabels)?)?;
    }
    Ok(())
}

/// The in-flight gauges that have seen a request: by method and scheme (OpenTelemetry
/// names), by method (the others), or by method and route (`Names::by_endpoint`),
/// schemes added up but with OpenTelemetry names.
fn encode_active(
    recorder: &Recorder<ServerRequests>,
    routes: &[Option<&str>],
    mut encoder: DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let requests = &recorder.family;
    let names = requests.names;
    // (labels, value) of each gauge, group by group (a group's route first).
    let mut gauges: Vec<(ActiveLabels<'_>, i64)> = Vec::new();
    let group_gauges = |gauges: &mut Vec<_>, active: &ActiveGauges, route, overflow| {
        for method in 0..Method::COUNT {
            let slots = method * UrlScheme::COUNT..(method + 1) * UrlScheme::COUNT;
            let seen = slots.filter(|slot| active.seen(*slot));
            let labels = |scheme| ActiveLabels {
                names,
                method: Method::from_index(method),
                scheme,
                route,
                overflow,
            };
            if names.otel_labels {
                for slot in seen {
                    let scheme = Some(UrlScheme::from_index(slot));
                    gauges.push((labels(scheme), active.value(slot)));
                }
            } else {
                let mut seen = seen.peekable();
                if seen.peek().is_some() {
                    let value = seen.map(|slot| active.value(slot)).sum::<i64>();
                    gauges.push((labels(None), value));
                }
            }
        }
    };
    for (group, active) in recorder.active_groups() {
        let (route, overflow) = match group {
            0 => (None, false),
            _ if group == requests.overflow_group() => (None, true),
            // A route group always has its route, made before any of its requests.
            _ => match routes.get(group).copied().flatten() {
                Some(route) => (Some(route), false),
                None => continue,
            },
        };
        group_gauges(&mut gauges, active, route, overflow);
    }
    if gauges.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(
        names.active,
        "Number of HTTP server requests in flight.",
        None,
        MetricType::Gauge,
    )?;
    for (labels, value) in &gauges {
        family.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}
