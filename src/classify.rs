//! Which requests failed, and how: the `error_type` label.

use std::borrow::Cow;

use http::{HeaderMap, StatusCode};

/// The value of the `error_type` label of a failed request.
///
/// Every distinct value is a new series: return a value from a small, fixed set (an
/// error kind, a gRPC code name), never a message. The layer keeps at most 64 values of
/// its classifier's; past them, failures are `_OTHER`.
///
/// ```
/// use tower_prometheus::http_metrics::ErrorType;
///
/// assert_eq!(ErrorType::new("timeout").as_str(), "timeout");
/// assert_eq!(ErrorType::OTHER.as_str(), "_OTHER");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorType(Cow<'static, str>);

impl ErrorType {
    /// `_OTHER`: a failure of no known kind, what the OpenTelemetry conventions use when
    /// nothing more specific is known.
    pub const OTHER: Self = Self(Cow::Borrowed("_OTHER"));

    /// An error type with this value.
    pub fn new(value: impl Into<Cow<'static, str>>) -> Self {
        Self(value.into())
    }

    /// The label value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a [`Classify`] says of a response head.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_prometheus::http_metrics::{Classified, ErrorType};
///
/// // A response that says in a header whether it failed.
/// fn classify(headers: &HeaderMap) -> Classified {
///     match headers.get("x-outcome").map(|v| v.as_bytes()) {
///         Some(b"ok") => Classified::Success,
///         Some(_) => Classified::Failure(ErrorType::new("upstream")),
///         None => Classified::AtEnd, // the trailers will say
///     }
/// }
/// assert_eq!(classify(&HeaderMap::new()), Classified::AtEnd);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified {
    /// Not a failure by its head (a 5xx status always is one, whatever this says).
    Success,
    /// A failure of this type.
    Failure(ErrorType),
    /// Decided when the body ends, from its trailers: [`Classify::classify_end`] is
    /// called then. gRPC sends its status this way.
    AtEnd,
}

/// Decides which requests failed and gives their `error_type`, in the spirit of
/// tower-http's `classify`, for the failures a status code does not show: an inner
/// service's error, or a response that says it failed in a header or in its trailers
/// (gRPC answers failed calls with HTTP 200 and a `grpc-status`).
///
/// `E` is the inner service's error type. Every method has a default, so an
/// implementation overrides only what it needs. [`DefaultClassifier`] keeps the
/// defaults.
///
/// What the layer itself sees wins over the classifier: a panic is `panic`, a
/// cancellation `cancelled`, a body error `body_error`; a response with a 5xx status
/// that the classifier calls a success gets its status code as `error_type`, as the
/// OpenTelemetry conventions say.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_prometheus::Metrics;
/// use tower_prometheus::http_metrics::{Classified, Classify, ErrorType};
///
/// /// Responses that tell of a timeout upstream, in a header of our proxy.
/// #[derive(Clone)]
/// struct UpstreamTimeouts;
///
/// impl<E> Classify<E> for UpstreamTimeouts {
///     fn classify_response(&self, _status: StatusCode, headers: &HeaderMap) -> Classified {
///         match headers.get("x-upstream-timeout") {
///             Some(_) => Classified::Failure(ErrorType::new("upstream_timeout")),
///             None => Classified::Success,
///         }
///     }
/// }
///
/// let layer = Metrics::new().http_layer().classify(UpstreamTimeouts);
/// ```
pub trait Classify<E>: Clone {
    /// The classification of a response by its head, when it arrives. Defaults to
    /// [`Classified::Success`].
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Classified {
        let _ = (status, headers);
        Classified::Success
    }

    /// The `error_type` of a response that [`classify_response`](Self::classify_response)
    /// left to its end, from its trailers (`None` when the body ended without any);
    /// `None` is a success. Defaults to `None`.
    ///
    /// A body that is dropped or fails before its end is `cancelled` or `body_error`
    /// instead, without a call to this.
    fn classify_end(&self, trailers: Option<&HeaderMap>) -> Option<ErrorType> {
        let _ = trailers;
        None
    }

    /// The `error_type` of an error the inner service returned (the request is then
    /// recorded with status 500). Defaults to [`ErrorType::OTHER`].
    fn classify_error(&self, error: &E) -> ErrorType {
        let _ = error;
        ErrorType::OTHER
    }
}

/// The classifier of [`HttpMetricsLayer`](crate::HttpMetricsLayer) unless one is given:
/// failures are 5xx responses (`error_type` = the status code) and inner errors
/// (`_OTHER`), besides panics, cancellations and body errors.
///
/// ```
/// use tower_prometheus::http_metrics::{Classified, Classify, DefaultClassifier};
///
/// let verdict = <DefaultClassifier as Classify<std::io::Error>>::classify_response(
///     &DefaultClassifier,
///     http::StatusCode::NOT_FOUND,
///     &http::HeaderMap::new(),
/// );
/// assert_eq!(verdict, Classified::Success, "a 404 is the client's, not a failure");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<E> Classify<E> for DefaultClassifier {}
