//! Label names, label values and the packed key of a series.

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

/// Which names the HTTP metrics and their labels get.
///
/// | what | `OpenTelemetry` (default) | `PromClient` |
/// |---|---|---|
/// | duration histogram | `http_server_request_duration_seconds` | `http_request_duration_seconds` |
/// | in-flight gauge | `http_server_active_requests` | `http_requests_in_flight` |
/// | request body bytes | `http_server_request_body_size_bytes` | `http_request_size_bytes` |
/// | response body bytes | `http_server_response_body_size_bytes` | `http_response_size_bytes` |
/// | method label | `http_request_method` | `method` |
/// | route label | `http_route` | `route` |
/// | status label | `http_response_status_code` | `status_code` |
/// | other labels | `url_scheme`, `network_protocol_version`, `error_type` (only on errors) | none |
///
/// `OpenTelemetry` follows the stable OpenTelemetry HTTP semantic conventions as
/// Prometheus spells them. `PromClient` keeps the names a Node.js `prom-client` +
/// Express set-up used, so that existing dashboards keep working after a rewrite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Naming {
    /// OpenTelemetry HTTP semantic conventions (the default).
    #[default]
    OpenTelemetry,
    /// The names of `prom-client` with the usual Express middleware.
    PromClient,
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
            },
        }
    }
}

impl Names {
    /// The metric families of the layer, with their unit suffixes.
    pub(crate) fn families(&self) -> [String; 5] {
        [
            format!("{}_seconds", self.duration),
            self.active.to_owned(),
            format!("{}_bytes", self.request_size),
            format!("{}_bytes", self.response_size),
            format!("{}_ratio", self.objective),
        ]
    }

    /// Every label name this naming can put on a series.
    pub(crate) fn label_names(&self) -> Vec<&'static str> {
        let mut names = vec![self.method, self.route, self.status, OVERFLOW_LABEL];
        if self.otel_labels {
            names.extend(["url_scheme", "network_protocol_version", "error_type"]);
        }
        names
    }
}

/// The label of the series that takes what the cardinality limit turned away.
pub(crate) const OVERFLOW_LABEL: &str = "otel_metric_overflow";

/// The request method as a label value: the RFC 9110 methods and PATCH, or `_OTHER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    pub(crate) const COUNT: usize = 10;

    const ALL: [Self; Self::COUNT] = [
        Self::Get,
        Self::Head,
        Self::Post,
        Self::Put,
        Self::Delete,
        Self::Connect,
        Self::Options,
        Self::Trace,
        Self::Patch,
        Self::Other,
    ];

    /// The label of an HTTP method. `GET` is checked first and inline: a comparison with
    /// http's constant is one of its enum's tag, where matching `as_str()` compared
    /// strings (16 instructions a request).
    #[inline]
    pub(crate) fn from_http(method: &http::Method) -> Self {
        if *method == http::Method::GET {
            Self::Get
        } else {
            Self::from_http_other(method)
        }
    }

    fn from_http_other(method: &http::Method) -> Self {
        use http::Method as M;
        const OTHERS: [(M, Method); 8] = [
            (M::POST, Method::Post),
            (M::HEAD, Method::Head),
            (M::PUT, Method::Put),
            (M::DELETE, Method::Delete),
            (M::PATCH, Method::Patch),
            (M::OPTIONS, Method::Options),
            (M::CONNECT, Method::Connect),
            (M::TRACE, Method::Trace),
        ];
        OTHERS
            .iter()
            .find(|(http, _)| http == method)
            .map_or(Self::Other, |(_, ours)| *ours)
    }

    /// The method numbered `index` (its discriminant); `_OTHER` past the last.
    #[inline]
    pub(crate) fn from_index(index: usize) -> Self {
        Self::ALL.get(index).copied().unwrap_or(Self::Other)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => "_OTHER",
        }
    }
}

/// The `url_scheme` label: what the server knows of its connections, never what a
/// request line claims (a plaintext `GET https://h/x` is still `http`).
///
/// Set on the layer with [`HttpMetricsLayer::url_scheme`](super::HttpMetricsLayer::url_scheme);
/// a server with a TLS listener and a plaintext one gives each its own layer.
///
/// ```
/// use tower_prometheus::{Metrics, UrlScheme};
///
/// let metrics = Metrics::new();
/// let behind_tls = metrics.http_layer().url_scheme(UrlScheme::Https);
/// assert_eq!(UrlScheme::default(), UrlScheme::Http);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UrlScheme {
    /// Plaintext HTTP (the default).
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl UrlScheme {
    pub(crate) const COUNT: usize = 2;

    pub(crate) fn from_index(index: usize) -> Self {
        if index % Self::COUNT == 1 {
            Self::Https
        } else {
            Self::Http
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// The slot of the in-flight gauge of requests with this method and scheme.
pub(crate) fn active_slot(method: Method, scheme: UrlScheme) -> usize {
    method as usize * UrlScheme::COUNT + scheme as usize
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

/// The `error_type` of a series, as a small number: the layer's own values, then those
/// of the classifier, interned by the recorder.
pub(crate) mod error_id {
    /// Not a failure (a 5xx status still gets its code as `error_type`).
    pub(crate) const NONE: u8 = 0;
    pub(crate) const OTHER: u8 = 1;
    pub(crate) const PANIC: u8 = 2;
    pub(crate) const CANCELLED: u8 = 3;
    pub(crate) const BODY_ERROR: u8 = 4;
    /// The first id of a classifier's value.
    pub(crate) const FIRST_CUSTOM: u8 = 5;
    /// The layer's own values, by id.
    pub(crate) const BUILT_IN: [&str; 5] = ["", "_OTHER", "panic", "cancelled", "body_error"];
}

/// The labels of one series packed in a `u64`, so that finding its counters costs one
/// integer hash:
///
/// | bits | what |
/// |---|---|
/// | 0–3 | method |
/// | 4 | scheme |
/// | 5–7 | protocol version |
/// | 8–15 | error type ([`error_id`]) |
/// | 16–25 | status code (100–999) |
/// | 26–57 | route id (0: no route) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeriesKey(u64);

impl SeriesKey {
    /// The labels known when the request arrives.
    #[inline]
    pub(crate) fn request(
        version: http::Version,
        method: Method,
        scheme: UrlScheme,
        route: u32,
    ) -> Self {
        Self(
            method as u64
                | (scheme as u64) << 4
                | version_index(version) << 5
                | u64::from(route) << 26,
        )
    }

    /// The key completed with how the request ended.
    #[inline]
    pub(crate) fn finish(self, status: u16, error: u8) -> Self {
        let status = u64::from(status.min(1023));
        Self(self.0 & !(0x3ffff << 8) | u64::from(error) << 8 | status << 16)
    }

    /// The key with its status code replaced by its class (404 by 400) when `grouped`.
    #[inline]
    pub(crate) fn group_status(self, grouped: bool) -> Self {
        if grouped {
            let class = u64::from(self.status() / 100 * 100);
            Self(self.0 & !(0x3ff << 16) | class << 16)
        } else {
            self
        }
    }

    /// The key with scheme, protocol version and error type cleared: what is left is
    /// what the `PromClient` names label (method, route, status).
    #[inline]
    pub(crate) fn without_otel_labels(self) -> Self {
        Self(self.0 & !(0x1 << 4 | 0x7 << 5 | 0xff << 8))
    }

    /// The slot of the request's in-flight gauge: one per method and scheme
    /// ([`active_slot`]), read straight from the bits.
    #[inline]
    pub(crate) fn active_slot(self) -> usize {
        (self.0 & 0xf) as usize * UrlScheme::COUNT + (self.0 >> 4 & 1) as usize
    }

    pub(crate) fn method(self) -> Method {
        Method::from_index((self.0 & 0xf) as usize)
    }

    pub(crate) fn scheme(self) -> UrlScheme {
        UrlScheme::from_index((self.0 >> 4 & 1) as usize)
    }

    pub(crate) fn route(self) -> u32 {
        (self.0 >> 26) as u32
    }

    /// Whether the protocol version is HTTP/1.1 or older.
    pub(crate) fn http1(self) -> bool {
        self.0 >> 5 & 0x7 <= 2
    }

    fn version(self) -> &'static str {
        version_str(self.0 >> 5 & 0x7)
    }

    pub(crate) fn error(self) -> u8 {
        (self.0 >> 8 & 0xff) as u8
    }

    pub(crate) fn status(self) -> u16 {
        (self.0 >> 16 & 0x3ff) as u16
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
            id if id < error_id::FIRST_CUSTOM => Some(error_id::BUILT_IN[usize::from(id)]),
            _ => Some(self.error.unwrap_or("_OTHER")),
        }
    }
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let names = self.names;
        (names.method, self.key.method().as_str()).encode(encoder.encode_label())?;
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

/// The labels of an in-flight gauge: method (and scheme with OpenTelemetry names).
pub(crate) struct ActiveLabels {
    pub(crate) names: &'static Names,
    pub(crate) method: Method,
    pub(crate) scheme: Option<UrlScheme>,
}

impl EncodeLabelSet for ActiveLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        (self.names.method, self.method.as_str()).encode(encoder.encode_label())?;
        if let Some(scheme) = self.scheme {
            ("url_scheme", scheme.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The label set of the overflow series.
pub(crate) struct OverflowLabels;

impl EncodeLabelSet for OverflowLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        (OVERFLOW_LABEL, "true").encode(encoder.encode_label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_rfc_9110_are_other() {
        for (method, label) in [
            ("GET", "GET"),
            ("PATCH", "PATCH"),
            ("CONNECT", "CONNECT"),
            ("PROPFIND", "_OTHER"),
            ("get", "_OTHER"),
            ("FOO", "_OTHER"),
        ] {
            let method = http::Method::from_bytes(method.as_bytes()).expect("valid token");
            assert_eq!(Method::from_http(&method).as_str(), label);
        }
    }

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
        assert!(!key.http1());
        assert!(
            SeriesKey::request(http::Version::HTTP_11, Method::Get, UrlScheme::Http, 1).http1()
        );
        assert_eq!(key.route(), 4_000_000_000);
        assert_eq!(key.status(), 204);
        assert_eq!(key.error(), 200);
        assert_eq!(
            key.active_slot(),
            active_slot(Method::Delete, UrlScheme::Https)
        );
        let plain = key.without_otel_labels();
        assert_eq!(
            (plain.method(), plain.route(), plain.status()),
            (Method::Delete, 4_000_000_000, 204)
        );
        assert_eq!((plain.scheme(), plain.error()), (UrlScheme::Http, 0));
    }

    #[test]
    fn groups_status_codes_by_class() {
        let key = SeriesKey::default().finish(404, error_id::CANCELLED);
        assert_eq!(key.group_status(true).status(), 400);
        assert_eq!(key.group_status(false).status(), 404);
        assert_eq!(key.group_status(true).error(), error_id::CANCELLED);
    }
}
