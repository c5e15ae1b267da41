//! How exemplars reach the exposition: left aside by the collectors while the exporter
//! encodes, then spliced into the OpenMetrics text and the protobuf messages.
//!
//! Why a detour: `prometheus-client` 0.26 passes exemplars to its encoders only as its
//! own `Exemplar` type (`MetricEncoder::encode_histogram`'s last argument), and that type
//! has no public constructor: its fields are crate-private, and the only values of it are
//! those its `HistogramWithExemplars` builds, under a lock, from its own histogram. A
//! collector of ours can therefore encode its buckets, but not the exemplars beside them.
//! So, while the crate's [`Exporter`](crate::Exporter) encodes a registry, the
//! collectors of the duration histograms leave their exemplars in a thread-local
//! ([`leave`], read back by [`capturing`]), in the order they encoded their series, and
//! the exporter adds them:
//!
//! - to the OpenMetrics text ([`patch_openmetrics`]), after each `_bucket` line of the
//!   families that left some, as ` # {trace_id="..",span_id=".."} value timestamp`;
//! - to the protobuf messages ([`patch_protobuf`], feature `protobuf`), on the classic
//!   buckets.
//!
//! A registry encoded by anything else than the crate's exporter (`prometheus-client`'s
//! own `text::encode`) simply has no exemplars: nothing is left aside when nobody
//! captures. The day `prometheus-client` can build an `Exemplar` from its parts, this
//! module goes, and the collectors pass their exemplars to `encode_histogram`.

use std::cell::RefCell;

use super::Exemplar;

/// The exemplars of one histogram family, as a scrape encoded it: per metric (in the
/// order encoded), per classic bucket (`+Inf` last).
#[derive(Debug)]
pub(crate) struct FamilyExemplars {
    /// The family's name with its unit, without any registry prefix.
    pub(crate) name: String,
    pub(crate) buckets: usize,
    pub(crate) metrics: Vec<Vec<Option<Exemplar>>>,
}

thread_local! {
    /// Set while the crate's exporter encodes on this thread: where the recorders leave
    /// their exemplars, which `prometheus-client` 0.26 gives no public way to pass
    /// through its encoders (its `Exemplar` has no public constructor).
    static CAPTURE: RefCell<Option<Vec<FamilyExemplars>>> = const { RefCell::new(None) };
}

/// Runs `encode` with exemplar capture on, and gives what the recorders left.
pub(crate) fn capturing<R>(encode: impl FnOnce() -> R) -> (R, Vec<FamilyExemplars>) {
    let _ = CAPTURE.try_with(|capture| capture.replace(Some(Vec::new())));
    let output = encode();
    let captured = CAPTURE
        .try_with(|capture| capture.take())
        .ok()
        .flatten()
        .unwrap_or_default();
    (output, captured)
}

/// Whether an exporter is capturing on this thread.
pub(crate) fn is_capturing() -> bool {
    CAPTURE
        .try_with(|capture| capture.try_borrow().is_ok_and(|c| c.is_some()))
        .unwrap_or(false)
}

/// The exemplars a collector gathers while it encodes one histogram family, left for the
/// exporter at the end ([`leave`]): nothing when exemplars are off or no exporter captures.
pub(crate) struct Leaving(Option<FamilyExemplars>);

impl Leaving {
    /// For a family of `series` histograms of `buckets` classic buckets (`+Inf` included),
    /// named `name` with its unit suffix, when `kept` (its series keep exemplars).
    pub(crate) fn new(
        kept: bool,
        name: impl FnOnce() -> String,
        buckets: usize,
        series: usize,
    ) -> Self {
        Self((kept && is_capturing()).then(|| FamilyExemplars {
            name: name(),
            buckets,
            metrics: Vec::with_capacity(series),
        }))
    }

    /// The exemplars of the next histogram encoded, `None` for one that keeps none.
    pub(crate) fn keep(&mut self, slots: Option<&[super::ExemplarSlot]>) {
        if let Some(family) = self.0.as_mut() {
            let slots = slots.unwrap_or_default();
            family
                .metrics
                .push(slots.iter().map(super::ExemplarSlot::read).collect());
        }
    }

    /// Leaves them for the exporter.
    pub(crate) fn leave(self) {
        if let Some(family) = self.0 {
            leave(family);
        }
    }
}

/// Leaves a family's exemplars for the exporter capturing on this thread, if any.
pub(crate) fn leave(family: FamilyExemplars) {
    let _ = CAPTURE.try_with(|capture| {
        if let Ok(mut capture) = capture.try_borrow_mut() {
            if let Some(families) = capture.as_mut() {
                families.push(family);
            }
        }
    });
}

impl Exemplar {
    /// The labels, as Go's `promhttp` and OpenTelemetry name them.
    pub(crate) fn labels(&self) -> [(&'static str, String); 2] {
        [
            ("trace_id", format!("{:032x}", self.context.trace_id())),
            ("span_id", format!("{:016x}", self.context.span_id())),
        ]
    }
}

/// Appends the exemplars to the `_bucket` lines of OpenMetrics text, for the families
/// in `captured` (matched by name, in order of appearance).
pub(crate) fn patch_openmetrics(text: String, captured: &[FamilyExemplars]) -> String {
    if captured
        .iter()
        .all(|family| family.metrics.iter().flatten().all(Option::is_none))
    {
        return text;
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut used = vec![false; captured.len()];
    // The family being written: its exemplars, its `_bucket` sample name, lines seen.
    let mut current: Option<(&FamilyExemplars, String, usize)> = None;
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = None;
            if let Some(name) = rest.strip_suffix(" histogram\n") {
                let found = captured
                    .iter()
                    .enumerate()
                    .find(|(i, family)| !used[*i] && name.ends_with(&family.name));
                if let Some((i, family)) = found {
                    used[i] = true;
                    current = Some((family, format!("{name}_bucket"), 0));
                }
            }
        } else if let Some((family, bucket_name, seen)) = &mut current {
            let is_bucket = line
                .strip_prefix(bucket_name.as_str())
                .is_some_and(|rest| rest.starts_with(['{', ' ']));
            if is_bucket && family.buckets > 0 {
                let exemplar = family
                    .metrics
                    .get(*seen / family.buckets)
                    .and_then(|metric| metric.get(*seen % family.buckets))
                    .copied()
                    .flatten();
                *seen += 1;
                if let Some(exemplar) = exemplar {
                    let [(trace_key, trace), (span_key, span)] = exemplar.labels();
                    out.push_str(line.trim_end_matches('\n'));
                    out.push_str(&format!(
                        " # {{{trace_key}=\"{trace}\",{span_key}=\"{span}\"}} {} {}.{:03}\n",
                        exemplar.value,
                        exemplar.millis / 1000,
                        exemplar.millis % 1000
                    ));
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    out
}

/// Sets the exemplars on the classic buckets of the protobuf families in `captured`.
#[cfg(feature = "protobuf")]
pub(crate) fn patch_protobuf(
    families: &mut [prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily],
    captured: &[FamilyExemplars],
) {
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as model;

    let mut used = vec![false; captured.len()];
    for family in families.iter_mut() {
        let found = captured
            .iter()
            .enumerate()
            .find(|(i, exemplars)| !used[*i] && family.name.ends_with(&exemplars.name));
        let Some((i, exemplars)) = found else {
            continue;
        };
        used[i] = true;
        for (metric, buckets) in family.metric.iter_mut().zip(&exemplars.metrics) {
            let Some(histogram) = metric.histogram.as_mut() else {
                continue;
            };
            for (bucket, exemplar) in histogram.bucket.iter_mut().zip(buckets) {
                let Some(exemplar) = exemplar else { continue };
                bucket.exemplar = Some(model::Exemplar {
                    label: exemplar
                        .labels()
                        .into_iter()
                        .map(|(name, value)| model::LabelPair {
                            name: name.to_owned(),
                            value,
                        })
                        .collect(),
                    value: exemplar.value,
                    timestamp: Some(prost_types::Timestamp {
                        seconds: (exemplar.millis / 1000) as i64,
                        nanos: ((exemplar.millis % 1000) * 1_000_000) as i32,
                    }),
                });
            }
        }
    }
}
