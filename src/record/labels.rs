//! Label values every family shares: the request method, the URL scheme, and the label
//! of the overflow series that the cardinality limit sends the rest to.

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

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
/// Set on the layer with [`HttpMetricsLayer::url_scheme`](crate::HttpMetricsLayer::url_scheme);
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

/// The label set of the overflow series.
pub(crate) struct OverflowLabels;

impl EncodeLabelSet for OverflowLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        (OVERFLOW_LABEL, "true").encode(encoder.encode_label())
    }
}

/// Encodes `server_address` and `server_port` of a server named `host`, `host:port`,
/// `[v6]` or `[v6]:port` (the client families' labels); the port defaults by scheme.
pub(crate) fn encode_server(
    address: &str,
    scheme: UrlScheme,
    encoder: &mut LabelSetEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) if !address.ends_with(']') => (host, port),
        _ => (address, ""),
    };
    let port = match (port, scheme) {
        ("", UrlScheme::Https) => "443",
        ("", UrlScheme::Http) => "80",
        (port, _) => port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ("server_address", host).encode(encoder.encode_label())?;
    ("server_port", port).encode(encoder.encode_label())
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
}
