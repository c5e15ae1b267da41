//! Service level objectives declared per route, published as series of their own: see
//! [`Objective`].

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::Error;

/// What a route promises: an availability or a latency target.
///
/// A service declares what it promises next to the code that keeps the promise, with
/// [`HttpMetricsBuilder::objective`](super::HttpMetricsBuilder::objective):
///
/// ```
/// use std::time::Duration;
/// use tower_prometheus::http_metrics::{HttpMetricsLayer, Objective};
/// use tower_prometheus::prometheus_client::registry::Registry;
///
/// let layer = HttpMetricsLayer::builder()
///     // 99.9 % of the requests to this route are answered without a 5xx.
///     .objective("/api/invoices", Objective::availability(0.999))
///     // 99 % of them finish within 250 ms (a bound of the default buckets).
///     .objective("/api/invoices", Objective::latency(0.99, Duration::from_millis(250)))
///     .build(&mut Registry::default())?;
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
///
/// # The series
///
/// Each objective becomes one gauge series, `http_server_objective_ratio` (with
/// [`Naming::PromClient`](super::Naming::PromClient): `http_request_objective_ratio`,
/// labelled `route`), whose value is the target and whose labels say what it is about:
///
/// ```text
/// http_server_objective_ratio{http_route="/api/invoices",objective="availability"} 0.999
/// http_server_objective_ratio{http_route="/api/invoices",objective="latency",threshold="0.25"} 0.99
/// ```
///
/// The target is the value, not a label, because PromQL computes with values: the error
/// budget is `1 - http_server_objective_ratio`. The latency threshold, in seconds, is the
/// `threshold` label, spelled as OpenMetrics and protobuf scrapes spell the `le` of that
/// bucket (and as Prometheus 3 stores every `le`): `"0.25"`, `"1.0"`. A rule copies it to
/// `le` with `label_replace` and selects the bucket with `and on (job, instance,
/// http_route, le)`; text 0.0.4 spells integer bounds without `.0` (`"1"`), so the rule
/// matches that spelling too. (The label is not `le` itself: Prometheus's lint refuses
/// `le` on a series that is not a histogram bucket.) One generic
/// rule set (`monitoring/prometheus/rules/slo.rules.yml` in the repository) turns these
/// series into error ratios and multi-window, multi-burn-rate alerts for every objective
/// of every service. Routes without an objective produce nothing, and a layer without
/// objectives publishes no such family.
///
/// # What counts as an error
///
/// - **availability**: a request recorded with a 5xx status. The layer records an `Err`
///   of the inner service and a panic as 500. Cancelled requests (499: the client left)
///   are not errors, nor are 4xx answers (408 included: the client's lateness). The
///   server's own timeout is one when it answers 503 and the layer is outside it
///   (tower-http's `TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, ..)`;
///   see [the crate docs](crate#where-the-layer-goes-in-a-tower-http-stack)).
/// - **latency**: a request whose duration (to the end of its response body) is above the
///   threshold, whatever its status.
///
/// ```
/// use std::time::Duration;
/// use tower_prometheus::http_metrics::Objective;
///
/// let availability = Objective::availability(0.999);
/// let latency = Objective::latency(0.99, Duration::from_millis(250));
/// assert_eq!(availability.target(), 0.999);
/// assert_eq!(latency.threshold(), Some(Duration::from_millis(250)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    target: f64,
    threshold: Option<Duration>,
}

impl Objective {
    /// `target` of the requests (0.999 for 99.9 %) are answered without a 5xx.
    ///
    /// The target is checked by [`build`](super::HttpMetricsBuilder::build): strictly
    /// between 0 and 1 (a target of 1 leaves no error budget to burn).
    pub const fn availability(target: f64) -> Self {
        Self {
            target,
            threshold: None,
        }
    }

    /// `target` of the requests (0.99 for 99 %) finish within `threshold`.
    ///
    /// [`build`](super::HttpMetricsBuilder::build) checks the target as for
    /// [`availability`](Self::availability), and that `threshold` is one of the duration
    /// histogram's bucket bounds: the share of requests under it is then counted exactly,
    /// not interpolated.
    pub const fn latency(target: f64, threshold: Duration) -> Self {
        Self {
            target,
            threshold: Some(threshold),
        }
    }

    /// The target, as a ratio (0.999 for 99.9 %).
    pub const fn target(&self) -> f64 {
        self.target
    }

    /// The latency threshold; `None` for an availability objective.
    pub const fn threshold(&self) -> Option<Duration> {
        self.threshold
    }

    fn kind(&self) -> &'static str {
        match self.threshold {
            None => "availability",
            Some(_) => "latency",
        }
    }
}

/// An objective checked by `build`: its route, target and (latency) bucket bound.
#[derive(Clone, Debug, PartialEq)]
struct Declared {
    route: String,
    kind: &'static str,
    target: f64,
    /// The duration bucket bound the threshold is, in seconds.
    bound: Option<f64>,
}

/// The declared objectives of one layer, encoded at every scrape.
#[derive(Debug)]
pub(crate) struct Objectives {
    name: &'static str,
    route_label: &'static str,
    declared: Vec<Declared>,
}

impl Objectives {
    /// Checks `objectives` against the duration bucket `bounds` and the excluded routes.
    pub(crate) fn new(
        name: &'static str,
        route_label: &'static str,
        objectives: Vec<(String, Objective)>,
        bounds: &[f64],
        excluded_routes: &[String],
    ) -> Result<Self, Error> {
        let mut declared: Vec<Declared> = Vec::with_capacity(objectives.len());
        for (route, objective) in objectives {
            let kind = objective.kind();
            let invalid = |reason: String| {
                Err(Error::InvalidObjective(format!(
                    "{kind} objective of route {route:?}: {reason}"
                )))
            };
            if !route.starts_with('/') {
                return invalid("a route template starts with '/'".to_owned());
            }
            if excluded_routes.contains(&route) {
                return invalid("the route is excluded, so it has no series to measure".to_owned());
            }
            let target = objective.target;
            if !(target > 0.0 && target < 1.0) {
                return invalid(format!(
                    "the target must be strictly between 0 and 1 (0.999 for 99.9 %), got {target}"
                ));
            }
            let bound = match objective.threshold {
                None => None,
                Some(threshold) => {
                    let seconds = threshold.as_secs_f64();
                    // A bound given in seconds and a Duration of it differ by rounding at
                    // most (0.1 s is 100 ms exactly, 0.1 is not): compare to a nanosecond.
                    match bounds.iter().find(|b| (**b - seconds).abs() < 1e-9) {
                        Some(bound) => Some(*bound),
                        None => {
                            return invalid(format!(
                                "the threshold {threshold:?} is not a bound of the duration \
                                 buckets {bounds:?}: add it with duration_buckets, or pick one"
                            ));
                        }
                    }
                }
            };
            if declared.iter().any(|d| d.route == route && d.kind == kind) {
                return invalid("the route has one already".to_owned());
            }
            declared.push(Declared {
                route,
                kind,
                target,
                bound,
            });
        }
        Ok(Self {
            name,
            route_label,
            declared,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.declared.is_empty()
    }
}

struct Labels<'a> {
    route_label: &'static str,
    declared: &'a Declared,
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        (self.route_label, self.declared.route.as_str()).encode(encoder.encode_label())?;
        ("objective", self.declared.kind).encode(encoder.encode_label())?;
        if let Some(bound) = self.declared.bound {
            // The f64 label value is written as the histogram writes its `le`.
            ("threshold", bound).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

impl Collector for Objectives {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        if self.declared.is_empty() {
            return Ok(());
        }
        let unit = Unit::Other("ratio".to_owned());
        let mut family = encoder.encode_descriptor(
            self.name,
            "Service level objective of a route: the share of requests that must be good. \
             objective=\"availability\": without a 5xx; objective=\"latency\": within threshold seconds.",
            Some(&unit),
            MetricType::Gauge,
        )?;
        for declared in &self.declared {
            family
                .encode_family(&Labels {
                    route_label: self.route_label,
                    declared,
                })?
                .encode_gauge(&declared.target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.005, 0.1, 0.25, 1.0];

    fn check(objectives: Vec<(&str, Objective)>) -> Result<Objectives, Error> {
        let objectives = objectives
            .into_iter()
            .map(|(route, o)| (route.to_owned(), o))
            .collect();
        Objectives::new(
            "http_server_objective",
            "http_route",
            objectives,
            BOUNDS,
            &["/health".to_owned()],
        )
    }

    fn error(objectives: Vec<(&str, Objective)>) -> String {
        check(objectives)
            .expect_err("an invalid objective")
            .to_string()
    }

    #[test]
    fn thresholds_match_bounds_given_in_either_unit() {
        let ok = check(vec![
            ("/a", Objective::latency(0.99, Duration::from_millis(100))),
            (
                "/b",
                Objective::latency(0.99, Duration::from_secs_f64(0.25)),
            ),
            ("/c", Objective::latency(0.9, Duration::from_secs(1))),
            ("/d", Objective::latency(0.9, Duration::from_millis(5))),
        ])
        .expect("bounds");
        let bounds: Vec<_> = ok.declared.iter().map(|d| d.bound).collect();
        assert_eq!(bounds, [Some(0.1), Some(0.25), Some(1.0), Some(0.005)]);
    }

    #[test]
    fn a_threshold_between_bounds_is_refused_with_the_bounds() {
        assert_eq!(
            error(vec![(
                "/a",
                Objective::latency(0.99, Duration::from_millis(300))
            )]),
            "invalid objective: latency objective of route \"/a\": the threshold 300ms is not a \
             bound of the duration buckets [0.005, 0.1, 0.25, 1.0]: add it with \
             duration_buckets, or pick one"
        );
    }

    #[test]
    fn targets_outside_zero_to_one_are_refused() {
        for target in [0.0, 1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
            let message = error(vec![("/a", Objective::availability(target))]);
            assert!(
                message.contains("strictly between 0 and 1"),
                "{target}: {message}"
            );
        }
    }

    #[test]
    fn one_objective_of_each_kind_per_route() {
        check(vec![
            ("/a", Objective::availability(0.999)),
            ("/a", Objective::latency(0.99, Duration::from_millis(250))),
            ("/b", Objective::availability(0.99)),
        ])
        .expect("one of each kind");
        assert!(
            error(vec![
                ("/a", Objective::availability(0.999)),
                ("/a", Objective::availability(0.99)),
            ])
            .ends_with("the route has one already")
        );
    }

    #[test]
    fn routes_are_templates_that_are_not_excluded() {
        assert!(error(vec![("api", Objective::availability(0.9))]).contains("starts with '/'"));
        assert!(error(vec![("/health", Objective::availability(0.9))]).contains("excluded"));
    }
}
