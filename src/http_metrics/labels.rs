//! The HTTP layer's names and labels, and the packed key of its series.

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

use crate::record::{Field, Key, Method, OVERFLOW_LABEL, UrlScheme, error_id};

/// Which names the HTTP metrics and their labels get.
///
/// | what | `OpenTelemetry` (default) | `PromClient` | `AxumPrometheus` |
/// |---|---|---|---|
/// | duration histogram | `http_server_request_duration_seconds` | `http_request_duration_seconds` | `axum_http_requests_duration_seconds` |
/// | request counter | none (the histogram's `_count`) | none | `axum_http_requests_total` |
/// | in-flight gauge | `http_server_active_requests` | `http_requests_in_flight` | `axum_http_requests_pending` |
/// | request body bytes | `http_server_request_body_size_bytes` | `http_request_size_bytes` | `axum_http_request_body_size` |
/// | response body bytes | `http_server_response_body_size_bytes` | `http_response_size_bytes` | `axum_http_response_body_size` |
/// | method label | `http_request_method` | `method` | `method` |
/// | route label | `http_route` | `route` | `endpoint` |
/// | status label | `http_response_status_code` | `status_code` | `status` |
/// | other labels | `url_scheme`, `network_protocol_version`, `error_type` (only on errors) | none | none |
///
/// `OpenTelemetry` follows the stable OpenTelemetry HTTP semantic conventions as
/// Prometheus spells them. `PromClient` keeps the names a Node.js `prom-client` +
/// Express set-up used, so that existing dashboards keep working after a rewrite.
/// `AxumPrometheus` keeps those of the `axum-prometheus` crate (0.10): see its variant.
///
/// ```
/// use tower_prometheus::{HttpMetricsLayer, Metrics, Naming};
///
/// let metrics = Metrics::builder()
///     .http(HttpMetricsLayer::builder().naming(Naming::AxumPrometheus))
///     .build()?;
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Naming {
    /// OpenTelemetry HTTP semantic conventions (the default).
    #[default]
    OpenTelemetry,
    /// The names of `prom-client` with the usual Express middleware.
    PromClient,
    /// The names and labels of [axum-prometheus](https://docs.rs/axum-prometheus) 0.10,
    /// so that its users' dashboards and alerts keep working.
    ///
    /// - `axum_http_requests_total` (counter), `axum_http_requests_duration_seconds`
    ///   (histogram), labelled `method`, `status` and `endpoint`; the counter is written
    ///   at scrape time from the histogram's counts, so it costs nothing per request.
    /// - `axum_http_requests_pending` (gauge), labelled `method` and `endpoint`: per
    ///   route, as axum-prometheus has it, which costs about 50 instructions a request
    ///   more than the other presets' gauges by method (the crate docs' "Coming from
    ///   axum-prometheus" has the figures).
    /// - `axum_http_response_body_size` (axum-prometheus' opt-in summary) is a histogram
    ///   of bytes, as is `axum_http_request_body_size` (which axum-prometheus does not
    ///   have), labelled `method` and `endpoint`; both are off with
    ///   [`body_sizes(false)`](crate::HttpMetricsBuilder::body_sizes).
    /// - `method` is one of the nine standard methods, or empty for any other, as
    ///   axum-prometheus has it; `status` the code.
    /// - `endpoint` is the route template, as axum-prometheus' default
    ///   (`EndpointLabel::MatchedPath`) has it, but a request that matched no route has
    ///   no `endpoint` label where axum-prometheus puts its raw path: raw paths are for
    ///   clients to choose, and would grow the series without bound. Prometheus stores a
    ///   missing label as an empty one: `endpoint=""` selects these requests.
    /// - `axum` is the [prefix](crate::HttpMetricsBuilder::prefix) of these names, which
    ///   axum-prometheus' `with_prefix` replaces: `prefix("myapp")` gives
    ///   `myapp_http_requests_total`.
    ///
    /// The connection metrics keep their `OpenTelemetry` names: axum-prometheus has none.
    AxumPrometheus,
}

/// The names a [`Naming`] gives, without unit suffixes (the encoder appends them).
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) duration: &'static str,
    pub(crate) active: &'static str,
    pub(crate) request_size: &'static str,
    pub(crate) response_size: &'static str,
    pub(crate) method: &'static str,
    pub(crate) route: &'static str,
    pub(crate) status: &'static str,
    /// The gauge of the declared objectives (`_ratio` is the unit's).
    pub(crate) objective: &'static str,
    /// `url_scheme`, `network_protocol_version` and `error_type` are added.
    pub(crate) otel_labels: bool,
    /// The request counter written at scrape time from the duration's counts (without
    /// `_total`, which the encoder appends), if the naming has one.
    pub(crate) requests: Option<&'static str>,
    /// Whether the size histograms' names end in `_bytes`: axum-prometheus' does not.
    pub(crate) size_unit: bool,
    /// The method label of a method outside RFC 9110 and PATCH.
    pub(crate) other_method: &'static str,
    /// Whether the in-flight gauge and the size histograms are by route (and method),
    /// not by method (and scheme), and the sizes without the status.
    pub(crate) by_endpoint: bool,
    /// The prefix of the names when the builder sets none.
    pub(crate) default_prefix: Option<&'static str>,
}

impl Naming {
    pub(crate) fn names(self) -> &'static Names {
        match self {
            Self::OpenTelemetry => &Names {
                duration: "http_server_request_duration",
                active: "http_server_active_requests",
                request_size: "http_server_request_body_size",
                response_size: "http_server_response_body_size",
                method: "http_request_method",
                route: "http_route",
                status: "http_response_status_code",
                objective: "http_server_objective",
                otel_labels: true,
                requests: None,
                size_unit: true,
                other_method: "_OTHER",
                by_endpoint: false,
                default_prefix: None,
            },
            Self::PromClient => &Names {
                duration: "http_request_duration",
                active: "http_requests_in_flight",
                request_size: "http_request_size",
                response_size: "http_response_size",
                method: "method",
                route: "route",
                status: "status_code",
                objective: "http_request_objective",
                otel_labels: false,
                requests: None,
                size_unit: true,
                other_method: "_OTHER",
                by_endpoint: false,
                default_prefix: None,
            },
            Self::AxumPrometheus => &Names {
                duration: "http_requests_duration",
                active: "http_requests_pending",
                request_size: "http_request_body_size",
                response_size: "http_response_body_size",
                method: "method",
                route: "endpoint",
                status: "status",
                objective: "http_requests_objective",
                otel_labels: false,
                requests: Some("http_requests"),
                size_unit: false,
                other_method: "",
                by_endpoint: true,
                default_prefix: Some("axum"),
            },
        }
    }
}

impl Names {
    /// The metric families of the layer, with their unit suffixes and `prefix`, a
    /// counter's without `_total`.
    pub(crate) fn families(&self, prefix: Option<&str>) -> Vec<String> {
        let size = |name: &str| match self.size_unit {
            true => format!("{name}_bytes"),
            false => name.to_owned(),
        };
        let mut families = vec![
            format!("{}_seconds", self.duration),
            self.active.to_owned(),
            size(self.request_size),
            size(self.response_size),
            format!("{}_ratio", self.objective),
        ];
        families.extend(self.requests.map(str::to_owned));
        match prefix {
            Some(prefix) => families.iter().map(|f| format!("{prefix}_{f}")).collect(),
            None => families,
        }
    }

    /// Every label name this naming can put on a series.
    pub(crate) fn label_names(&self) -> Vec<&'static str> {
        let mut names = vec![self.method, self.route, self.status, OVERFLOW_LABEL];
        if self.otel_labels {
            names.extend(["url_scheme", "network_protocol_version", "error_type"]);
        }
        names
    }

    /// The method label of `method`.
    pub(crate) fn method(&self, method: Method) -> &'static str {
        match method {
            Method::Other => self.other_method,
            method => method.as_str(),
        }
    }
}

/// `network_protocol_version`, from the request's HTTP version.
fn version_index(version: http::Version) -> u64 {
    // Compared in this order: HTTP/1.1, the most common, first.
    match version {
        http::Version::HTTP_11 => 2,
        http::Version::HTTP_2 => 3,
        http::Version::HTTP_09 => 0,
        http::Version::HTTP_10 => 1,
        http::Version::HTTP_3 => 4,
        _ => 2,
    }
}

fn version_str(index: u64) -> &'static str {
    ["0.9", "1.0", "1.1", "2", "3"][(index as usize).min(4)]
}

/// The labels of one series packed in a [`Key`], so that finding its counters costs one
/// integer hash:
///
/// | field | bits | what |
/// |---|---|---|
/// | [`METHOD`] | 0–3 | method |
/// | [`SCHEME`] | 4 | scheme |
/// | [`VERSION`] | 5–7 | protocol version |
/// | [`ERROR`] | 8–15 | error type ([`error_id`]) |
/// | [`STATUS`] | 16–25 | status code (100–999; 0 until the call ended) |
/// | [`ROUTE`] | 26–57 | route id (0: no route) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeriesKey(pub(crate) Key);

const METHOD: Field = Field::first(4);
const SCHEME: Field = Field::after(METHOD, 1);
const VERSION: Field = Field::after(SCHEME, 3);
const ERROR: Field = Field::after(VERSION, 8);
const STATUS: Field = Field::after(ERROR, 10);
const ROUTE: Field = Field::after(STATUS, 32);

impl SeriesKey {
    /// The labels known when the request arrives.
    #[inline]
    pub(crate) fn request(
        version: http::Version,
        method: Method,
        scheme: UrlScheme,
        route: u32,
    ) -> Self {
        let key = METHOD.set(Key(0), method as u64);
        let key = SCHEME.set(key, scheme as u64);
        let key = VERSION.set(key, version_index(version));
        Self(ROUTE.set(key, u64::from(route)))
    }

    /// The key completed with how the request ended.
    #[inline]
    pub(crate) fn finish(self, status: u16, error: u8) -> Self {
        let key = STATUS.set(self.0, u64::from(status).min(STATUS.max()));
        Self(ERROR.set(key, u64::from(error)))
    }

    /// The key with its status code replaced by its class (404 by 400) when `grouped`.
    #[inline]
    pub(crate) fn group_status(self, grouped: bool) -> Self {
        if grouped {
            Self(STATUS.set(self.0, u64::from(self.status() / 100 * 100)))
        } else {
            self
        }
    }

    /// The key with scheme, protocol version and error type cleared: what is left is
    /// what the `PromClient` names label (method, route, status).
    #[inline]
    pub(crate) fn without_otel_labels(self) -> Self {
        Self(ERROR.clear(VERSION.clear(SCHEME.clear(self.0))))
    }

    /// The slot of the request's in-flight gauge: one per method and scheme, read
    /// straight from the bits.
    #[inline]
    pub(crate) fn active_slot(self) -> usize {
        METHOD.get(self.0) as usize * UrlScheme::COUNT + SCHEME.get(self.0) as usize
    }

    pub(crate) fn method(self) -> Method {
        Method::from_index(METHOD.get(self.0) as usize)
    }

    pub(crate) fn scheme(self) -> UrlScheme {
        UrlScheme::from_index(SCHEME.get(self.0) as usize)
    }

    pub(crate) fn route(self) -> u32 {
        ROUTE.get(self.0) as u32
    }

    fn version(self) -> &'static str {
        version_str(VERSION.get(self.0))
    }

    pub(crate) fn error(self) -> u8 {
        ERROR.get(self.0) as u8
    }

    pub(crate) fn status(self) -> u16 {
        STATUS.get(self.0) as u16
    }
}

/// A series key with what is needed to write its labels. Written once per line of the
/// exposition (each bucket repeats them), so nothing here allocates.
pub(crate) struct SeriesLabels<'a> {
    key: SeriesKey,
    names: &'a Names,
    route: Option<&'a str>,
    /// The classifier's value, for a custom error id.
    error: Option<&'a str>,
    /// The status label value, `"404"` or `"4xx"`.
    status: [u8; 3],
}

impl<'a> SeriesLabels<'a> {
    pub(crate) fn new(
        key: SeriesKey,
        names: &'a Names,
        route: Option<&'a str>,
        error: Option<&'a str>,
        grouped_status: bool,
    ) -> Self {
        let code = key.status();
        let digit = |n: u16| b'0' + (n % 10) as u8;
        let status = if grouped_status {
            [digit(code / 100), b'x', b'x']
        } else {
            [digit(code / 100), digit(code / 10), digit(code)]
        };
        Self {
            key,
            names,
            route,
            error,
            status,
        }
    }

    fn status(&self) -> &str {
        std::str::from_utf8(&self.status).unwrap_or("_OTHER")
    }

    fn error_type(&self) -> Option<&str> {
        match self.key.error() {
            error_id::NONE if self.key.status() >= 500 => Some(self.status()),
            error_id::NONE => None,
            id => match error_id::NAMES.get(usize::from(id)) {
                Some(name) => Some(name),
                None => Some(self.error.unwrap_or("_OTHER")),
            },
        }
    }
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let names = self.names;
        (names.method, names.method(self.key.method())).encode(encoder.encode_label())?;
        if let Some(route) = self.route {
            (names.route, route).encode(encoder.encode_label())?;
        }
        (names.status, self.status()).encode(encoder.encode_label())?;
        if names.otel_labels {
            ("url_scheme", self.key.scheme().as_str()).encode(encoder.encode_label())?;
            ("network_protocol_version", self.key.version()).encode(encoder.encode_label())?;
            if let Some(error_type) = self.error_type() {
                ("error_type", error_type).encode(encoder.encode_label())?;
            }
        }
        Ok(())
    }
}

/// The labels of an in-flight gauge: method, and scheme with OpenTelemetry names, or
/// route with `AxumPrometheus` names (whose size histograms have these labels too).
pub(crate) struct ActiveLabels<'a> {
    pub(crate) names: &'static Names,
    pub(crate) method: Method,
    pub(crate) scheme: Option<UrlScheme>,
    /// The route, by endpoint (`None`: the request matched none).
    pub(crate) route: Option<&'a str>,
    /// Routes beyond the cardinality limit, by endpoint.
    pub(crate) overflow: bool,
}

impl EncodeLabelSet for ActiveLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        (self.names.method, self.names.method(self.method)).encode(encoder.encode_label())?;
        if let Some(scheme) = self.scheme {
            ("url_scheme", scheme.as_str()).encode(encoder.encode_label())?;
        }
        if let Some(route) = self.route {
            (self.names.route, route).encode(encoder.encode_label())?;
        }
        if self.overflow {
            (OVERFLOW_LABEL, "true").encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = SeriesKey::request(
            http::Version::HTTP_2,
            Method::Delete,
            UrlScheme::Https,
            4_000_000_000,
        )
        .finish(503, error_id::NONE)
        .finish(204, 200);
        assert_eq!(key.method(), Method::Delete);
        assert_eq!(key.scheme(), UrlScheme::Https);
        assert_eq!(key.version(), "2");
        assert_eq!(key.route(), 4_000_000_000);
        assert_eq!(key.status(), 204);
        assert_eq!(key.error(), 200);
        assert_eq!(
            key.active_slot(),
            Method::Delete as usize * UrlScheme::COUNT + UrlScheme::Https as usize
        );
        let plain = key.without_otel_labels();
        assert_eq!(
            (plain.method(), plain.route(), plain.status()),
            (Method::Delete, 4_000_000_000, 204)
        );
        assert_eq!((plain.scheme(), plain.error()), (UrlScheme::Http, 0));
    }

    #[test]
    fn the_axum_prometheus_names() {
        let names = Naming::AxumPrometheus.names();
        assert_eq!(
            names.families(Some("axum")),
            [
                "axum_http_requests_duration_seconds",
                "axum_http_requests_pending",
                "axum_http_request_body_size",
                "axum_http_response_body_size",
                "axum_http_requests_objective_ratio",
                "axum_http_requests",
            ]
        );
        assert_eq!(names.default_prefix, Some("axum"));
        assert_eq!(
            names.label_names(),
            ["method", "endpoint", "status", OVERFLOW_LABEL]
        );
        assert_eq!(names.method(Method::Other), "");
        assert_eq!(names.method(Method::Patch), "PATCH");
        let otel = Naming::OpenTelemetry.names();
        assert_eq!(otel.method(Method::Other), "_OTHER");
        assert_eq!(
            otel.families(None)[2],
            "http_server_request_body_size_bytes"
        );
        assert_eq!(otel.families(None).len(), 5, "no request counter");
    }

    #[test]
    fn groups_status_codes_by_class() {
        let key = SeriesKey::default().finish(404, error_id::CANCELLED);
        assert_eq!(key.group_status(true).status(), 400);
        assert_eq!(key.group_status(false).status(), 404);
        assert_eq!(key.group_status(true).error(), error_id::CANCELLED);
    }
}
