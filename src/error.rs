//! The error returned when a configuration is invalid.

use std::fmt;

/// The largest [`HttpMetricsBuilder::max_series`](crate::HttpMetricsBuilder::max_series):
/// a family of more series than this is more than a Prometheus server should scrape from
/// one target, and the lookup tables of the layer (two tables of 16-byte slots, each at
/// least twice the limit rounded up to a power of two, allocated at build) already weigh
/// 8 MiB at this limit.
pub const SERIES_LIMIT: usize = 100_000;

/// A configuration that cannot be built: the reason is in the message.
///
/// Building never panics on bad input; every builder of this crate returns this error
/// instead, naming the value it refused.
///
/// ```
/// use tower_prometheus::HttpMetricsLayer;
/// use prometheus_client::registry::Registry;
///
/// let error = HttpMetricsLayer::builder()
///     .duration_buckets([0.5, 0.1])
///     .build(&mut Registry::default())
///     .unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "invalid histogram buckets: bounds must be strictly increasing (0.1 follows 0.5)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Histogram bucket bounds that are not finite or not strictly increasing.
    InvalidBuckets(String),
    /// A label name that Prometheus does not accept, or one the layer already uses.
    InvalidLabelName(String),
    /// A metric name prefix that is not a valid Prometheus metric name.
    InvalidPrefix(String),
    /// A cardinality limit of zero, or over
    /// [`SERIES_LIMIT`].
    InvalidCardinalityLimit,
    /// A runtime collector was created outside a Tokio runtime.
    NoRuntime,
    /// A lag probe resolution of zero.
    InvalidLagResolution,
    /// A path the layer cannot use (a nested service's mount, say).
    InvalidPath(String),
    /// A metric registered twice, or under a name Prometheus does not accept.
    InvalidMetricName(String),
    /// A service level objective the layer cannot measure: a target not strictly between
    /// 0 and 1, a latency threshold that is not a duration bucket bound, a second
    /// objective of a kind on one route, or a route that is excluded.
    InvalidObjective(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBuckets(reason) => write!(f, "invalid histogram buckets: {reason}"),
            Self::InvalidLabelName(reason) => write!(f, "invalid label name: {reason}"),
            Self::InvalidPrefix(prefix) => write!(
                f,
                "invalid metric name prefix {prefix:?}: use letters, digits and '_', not starting with a digit"
            ),
            Self::InvalidCardinalityLimit => write!(
                f,
                "invalid cardinality limit: it must be from 1 to {SERIES_LIMIT}"
            ),
            Self::NoRuntime => {
                f.write_str("no Tokio runtime: create the runtime collector from within a runtime")
            }
            Self::InvalidLagResolution => {
                f.write_str("invalid lag probe resolution: it must be longer than zero")
            }
            Self::InvalidPath(reason) => write!(f, "invalid path: {reason}"),
            Self::InvalidObjective(reason) => write!(f, "invalid objective: {reason}"),
            Self::InvalidMetricName(reason) => write!(f, "invalid metric name: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`
/// (reserved by Prometheus).
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) without colons,
/// which Prometheus keeps for recording rules.
pub(crate) fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        for good in ["a", "_a", "service_name", "A9"] {
            assert!(is_valid_label_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "é", "__name__", "a b", "a\"b"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn metric_names() {
        assert!(is_valid_metric_name("invoicing"));
        assert!(is_valid_metric_name("__x"));
        assert!(!is_valid_metric_name("my-app"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_metric_name("a:b"));
    }
}
