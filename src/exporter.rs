//! The `/metrics` endpoint: a tower [`Service`] that encodes a [`Registry`].
//!
//! - The format is the one the `Accept` header ranks highest (its `q` values) among
//!   OpenMetrics text 1.0.0 (and 0.0.1, which 1.0.0 text satisfies), the Prometheus text
//!   formats 0.0.4 and 1.0.0, and, with the `protobuf` feature, the Prometheus protobuf
//!   format; a tie goes to OpenMetrics, and no `Accept` (a browser, `curl`), `*/*` or
//!   only types it cannot write get text 0.0.4, which every scraper reads. The answer has
//!   exactly one `Content-Type`, naming what was sent, with the `escaping` that
//!   Prometheus 3 asked for echoed: our names are legacy-valid, so every escaping scheme
//!   leaves them unchanged, and text 1.0.0 is byte for byte text 0.0.4.
//! - What each format carries: native histogram buckets only protobuf (text keeps the
//!   classic buckets); exemplars OpenMetrics and protobuf, never the text formats, which
//!   have no syntax for them.
//! - With the `gzip` feature (on by default), the body is gzip-compressed when
//!   `Accept-Encoding` allows it.
//! - `GET` and `HEAD` are served; other methods get `405 Method Not Allowed`.
//! - If encoding fails (a custom collector returned an error), the answer is
//!   `500 Internal Server Error`, never a panic.
//!
//! The registry is encoded on the calling task, without holding any lock that request
//! recording waits for.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tower_service::Service;

use crate::exemplar::splice::{capturing, patch_openmetrics};

/// The `Content-Type` of OpenMetrics text 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of the Prometheus protobuf format (feature `protobuf`):
/// length-delimited `io.prometheus.client.MetricFamily` messages, the only format that
/// carries native histograms.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Serves a [`Registry`] in the format the scraper asks for.
///
/// As an axum route, next to the application (`Metrics::exporter` builds it for you):
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::Exporter;
///
/// let registry = Arc::new(Registry::default());
/// let app: Router = Router::new().route_service("/metrics", Exporter::new(registry));
/// ```
///
/// Or alone, as any tower service:
///
/// ```
/// use std::sync::Arc;
/// use http::{Request, header};
/// use http_body_util::BodyExt;
/// use prometheus_client::{metrics::counter::Counter, registry::Registry};
/// use tower::ServiceExt;
/// use tower_prometheus::Exporter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::default();
/// let jobs: Counter = Counter::default();
/// registry.register("jobs", "Jobs done", jobs.clone());
/// jobs.inc();
///
/// let request = Request::get("/metrics").body(())?;
/// let response = Exporter::new(Arc::new(registry)).oneshot(request).await?;
/// assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; version=0.0.4; charset=utf-8");
/// let body = response.into_body().collect().await?.to_bytes();
/// assert_eq!(body, "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 1\n");
/// # Ok(())
/// # }
/// ```
///
/// On a port of its own, which is what public services should do so that the internet
/// cannot read their metrics, see `examples/separate_port.rs` in the repository.
#[derive(Clone, Debug)]
pub struct Exporter {
    registry: Arc<Registry>,
    /// The length of the last exposition: the next one is encoded into a buffer that
    /// size, not grown by doubling (and copying) from empty.
    last_len: Arc<AtomicUsize>,
}

impl Exporter {
    /// An exporter of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            last_len: Arc::default(),
        }
    }

    /// The response to a request with this method and these headers.
    fn respond(&self, method: &Method, headers: &HeaderMap) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are allowed\n",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let negotiated = negotiate(headers);
        let last_len = self.last_len.load(Ordering::Relaxed);
        let Some(encoded) = encode(&self.registry, negotiated.format, last_len) else {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded\n",
            );
        };
        self.last_len.store(encoded.len(), Ordering::Relaxed);
        let (body, gzipped) = compress(encoded, headers);
        let content_type = negotiated.content_type();
        let mut builder = Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::VARY, "accept, accept-encoding");
        if gzipped {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
        }
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        builder
            .body(Full::new(body))
            .expect("static header names and values are valid")
    }
}

impl<B> Service<Request<B>> for Exporter {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.headers())))
    }
}

/// The registry in `format`, into a buffer of about `last_len` bytes; `None` when a
/// collector failed.
///
/// The HTTP layers' exemplars are left aside by their collectors while the registry is
/// encoded (`prometheus-client` 0.26 has no public way to build its exemplars), then
/// added to the OpenMetrics `_bucket` lines and the protobuf buckets.
fn encode(registry: &Registry, format: Format, last_len: usize) -> Option<Vec<u8>> {
    let mut text = String::with_capacity(last_len + last_len / 8);
    match format {
        Format::OpenMetrics100 | Format::OpenMetrics001 => {
            let (encoded, exemplars) = capturing(|| text::encode(&mut text, registry));
            encoded.ok()?;
            text = patch_openmetrics(text, &exemplars);
        }
        Format::Text004 | Format::Text100 => prometheus_text::encode(&mut text, registry).ok()?,
        #[cfg(feature = "protobuf")]
        Format::Protobuf => return encode_protobuf(registry, last_len),
        #[cfg(not(feature = "protobuf"))]
        // `negotiate` offers protobuf only with the feature.
        Format::Protobuf => return None,
    }
    Some(text.into_bytes())
}

/// The registry as length-delimited `io.prometheus.client.MetricFamily` messages.
#[cfg(feature = "protobuf")]
fn encode_protobuf(registry: &Registry, last_len: usize) -> Option<Vec<u8>> {
    use prost::Message as _;

    let (families, exemplars) =
        capturing(|| prometheus_client::encoding::prometheus_protobuf::encode(registry));
    let mut families = families.ok()?;
    crate::exemplar::splice::patch_protobuf(&mut families, &exemplars);
    let mut body = Vec::with_capacity(last_len + last_len / 8);
    for family in families {
        family.encode_length_delimited(&mut body).ok()?;
    }
    Some(body)
}

fn plain(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The elements of comma-separated header values, each as (value, parameters, q).
fn weighted<'a>(
    headers: &'a HeaderMap,
    name: header::HeaderName,
) -> impl Iterator<Item = (&'a str, Vec<(&'a str, &'a str)>, f32)> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            let mut parts = element.split(';').map(str::trim);
            let value = parts.next().filter(|value| !value.is_empty())?;
            let mut q = 1.0;
            let mut params = Vec::new();
            for param in parts {
                let (key, val) = param.split_once('=').unwrap_or((param, ""));
                let (key, val) = (key.trim(), val.trim().trim_matches('"'));
                if key.eq_ignore_ascii_case("q") {
                    q = val
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))?;
                } else {
                    params.push((key, val));
                }
            }
            Some((value, params, q))
        })
}

/// An exposition format this exporter can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Format {
    // Declared in the order that wins a tie of `q` values: the least preferred first.
    /// The Prometheus text format 0.0.4.
    Text004,
    /// The Prometheus text format 1.0.0: 0.0.4 with quoted UTF-8 names allowed. Our names
    /// are legacy-valid, so the body is byte for byte that of 0.0.4.
    Text100,
    /// The Prometheus protobuf format, length-delimited `MetricFamily` messages.
    Protobuf,
    /// OpenMetrics text 0.0.1, which OpenMetrics 1.0.0 text satisfies.
    OpenMetrics001,
    /// OpenMetrics text 1.0.0.
    OpenMetrics100,
}

/// The name escaping schemes Prometheus 3 asks for (`escaping=` in `Accept`). Our metric
/// and label names are legacy-valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`), so every scheme leaves
/// them as they are: the parameter is only echoed in the `Content-Type`.
const ESCAPING_SCHEMES: [&str; 4] = ["allow-utf-8", "underscores", "dots", "values"];

/// The format to answer with, and the `escaping` the chosen media range asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Negotiated {
    format: Format,
    escaping: Option<&'static str>,
}

impl Negotiated {
    /// The `Content-Type` naming what is sent.
    fn content_type(self) -> String {
        let base = match self.format {
            Format::Text004 => PROMETHEUS_TEXT_CONTENT_TYPE,
            Format::Text100 => "text/plain; version=1.0.0; charset=utf-8",
            Format::Protobuf => PROTOBUF_CONTENT_TYPE,
            Format::OpenMetrics001 => "application/openmetrics-text; version=0.0.1; charset=utf-8",
            Format::OpenMetrics100 => OPENMETRICS_CONTENT_TYPE,
        };
        match self.escaping {
            Some(escaping) => format!("{base}; escaping={escaping}"),
            None => base.to_owned(),
        }
    }
}

/// The format the `Accept` header ranks highest among those this build can write.
///
/// Each media range maps to at most one format: `text/plain` (version 0.0.4, 1.0.0 or
/// none), `application/openmetrics-text` (version 1.0.0, 0.0.1 or none),
/// `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
/// `encoding=delimited` (feature `protobuf`), `text/*` and `*/*` (text 0.0.4) and
/// `application/*` (OpenMetrics 1.0.0); anything else, or a malformed `q`, is skipped.
/// The highest `q` wins; a tie goes to OpenMetrics 1.0.0, then 0.0.1, protobuf, text
/// 1.0.0, text 0.0.4. Nothing acceptable (no `Accept`, or only types we cannot write)
/// gets text 0.0.4, which every scraper reads.
fn negotiate(headers: &HeaderMap) -> Negotiated {
    let mut best: Option<(f32, Negotiated)> = None;
    for (media_type, params, q) in weighted(headers, header::ACCEPT) {
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| *value)
        };
        let is = |name: &str| media_type.eq_ignore_ascii_case(name);
        let format = if is("application/openmetrics-text") {
            match param("version") {
                None | Some("1.0.0") => Format::OpenMetrics100,
                Some("0.0.1") => Format::OpenMetrics001,
                Some(_) => continue,
            }
        } else if is("text/plain") {
            match param("version") {
                None | Some("0.0.4") => Format::Text004,
                Some("1.0.0") => Format::Text100,
                Some(_) => continue,
            }
        } else if is("application/vnd.google.protobuf") {
            let delimited = param("encoding").is_none_or(|e| e.eq_ignore_ascii_case("delimited"));
            let family = param("proto") == Some("io.prometheus.client.MetricFamily");
            if !(cfg!(feature = "protobuf") && delimited && family) {
                continue;
            }
            Format::Protobuf
        } else if is("application/*") {
            Format::OpenMetrics100
        } else if is("text/*") || is("*/*") {
            Format::Text004
        } else {
            continue;
        };
        if q <= 0.0 {
            continue;
        }
        let escaping = param("escaping")
            .and_then(|asked| ESCAPING_SCHEMES.into_iter().find(|known| *known == asked));
        let candidate = Negotiated { format, escaping };
        if best.is_none_or(|(best_q, best)| q > best_q || (q == best_q && format > best.format)) {
            best = Some((q, candidate));
        }
    }
    best.map_or(
        Negotiated {
            format: Format::Text004,
            escaping: None,
        },
        |(_, negotiated)| negotiated,
    )
}

/// Whether `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`) with `q` > 0, or `*`
/// with `q` > 0 and no explicit `gzip;q=0`.
#[cfg_attr(not(feature = "gzip"), allow(dead_code))]
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for (coding, _, q) in weighted(headers, header::ACCEPT_ENCODING) {
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// The body, gzipped when the client accepts it; the flag says whether it was.
#[cfg(feature = "gzip")]
fn compress(body: Vec<u8>, headers: &HeaderMap) -> (Vec<u8>, bool) {
    use std::io::Write as _;

    if !accepts_gzip(headers) {
        return (body, false);
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail; if it somehow did, send the text uncompressed.
    match encoder.write_all(&body).and_then(|()| encoder.finish()) {
        Ok(gzipped) => (gzipped, true),
        Err(_) => (body, false),
    }
}

#[cfg(not(feature = "gzip"))]
fn compress(body: Vec<u8>, _headers: &HeaderMap) -> (Vec<u8>, bool) {
    (body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    /// What `negotiate` picks for this `Accept` header: its `Content-Type`.
    fn answer(accept: &'static str) -> String {
        negotiate(&headers(header::ACCEPT, accept)).content_type()
    }

    const OPENMETRICS_1: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    const OPENMETRICS_0: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";
    const TEXT_0: &str = "text/plain; version=0.0.4; charset=utf-8";
    const TEXT_1: &str = "text/plain; version=1.0.0; charset=utf-8";

    /// The `Accept` headers Prometheus sends, from its `scrape/scrape.go` (`acceptHeader`,
    /// `config.ScrapeProtocolsHeaders`), and what each must get.
    #[test]
    fn negotiates_what_prometheus_sends() {
        let protobuf = if cfg!(feature = "protobuf") {
            PROTOBUF_CONTENT_TYPE
        } else {
            OPENMETRICS_1
        };
        // Prometheus 2.x before 2.49 (the Debian 2.42 included), default.
        let v2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(answer(v2), OPENMETRICS_1);
        // Prometheus 2.x before 2.49 with `--enable-feature=native-histograms`.
        let v2_native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(answer(v2_native), protobuf);
        // Prometheus 2.49 to 2.55 (`scrape_protocols`), default and proto first.
        let v2_49 = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(answer(v2_49), OPENMETRICS_1);
        let v2_49_proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(answer(v2_49_proto), protobuf);
        // Prometheus 3.0 (every range gets `escaping=allow-utf-8`).
        let v3_0 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2";
        assert_eq!(
            answer(v3_0),
            format!("{OPENMETRICS_1}; escaping=allow-utf-8")
        );
        let v3_0_proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,*/*;q=0.1";
        let expected = if cfg!(feature = "protobuf") {
            format!("{PROTOBUF_CONTENT_TYPE}; escaping=allow-utf-8")
        } else {
            format!("{OPENMETRICS_1}; escaping=allow-utf-8")
        };
        assert_eq!(answer(v3_0_proto), expected);
        // Prometheus 3.x (escaping on the 1.0.0 text formats only), as the issue quotes it.
        let v3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(answer(v3), format!("{OPENMETRICS_1}; escaping=allow-utf-8"));
        let v3_proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=underscores;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(
            answer(v3_proto),
            if cfg!(feature = "protobuf") {
                PROTOBUF_CONTENT_TYPE.to_owned()
            } else {
                format!("{OPENMETRICS_1}; escaping=underscores")
            }
        );
        // Prometheus 3.x with `scrape_protocols: [PrometheusText1.0.0, PrometheusText0.0.4]`.
        let v3_text = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.5,*/*;q=0.4";
        assert_eq!(answer(v3_text), format!("{TEXT_1}; escaping=allow-utf-8"));
        // `scrape_protocols: [OpenMetricsText0.0.1]` and `[PrometheusText0.0.4]`.
        assert_eq!(
            answer("application/openmetrics-text;version=0.0.1;q=0.6,*/*;q=0.5"),
            OPENMETRICS_0
        );
        assert_eq!(answer("text/plain;version=0.0.4;q=0.6,*/*;q=0.5"), TEXT_0);
    }

    #[test]
    fn negotiates_other_shapes() {
        assert_eq!(negotiate(&HeaderMap::new()).content_type(), TEXT_0);
        assert_eq!(answer("*/*"), TEXT_0);
        assert_eq!(answer("text/plain"), TEXT_0);
        assert_eq!(
            answer("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            TEXT_0
        );
        assert_eq!(
            answer("application/json"),
            TEXT_0,
            "nothing we write: the default"
        );
        assert_eq!(answer("application/openmetrics-text"), OPENMETRICS_1);
        assert_eq!(answer("application/*"), OPENMETRICS_1);
        assert_eq!(
            answer("Application/OpenMetrics-Text; Version=1.0.0"),
            OPENMETRICS_1
        );
        assert_eq!(
            answer("application/openmetrics-text; version=2.0.0"),
            TEXT_0
        );
        assert_eq!(answer("text/plain; version=9.9.9"), TEXT_0);
        assert_eq!(answer("application/openmetrics-text;q=0"), TEXT_0);
        assert_eq!(
            answer("application/openmetrics-text;q=0.4,text/plain;q=0.9"),
            TEXT_0
        );
        assert_eq!(
            answer("text/plain, application/openmetrics-text"),
            OPENMETRICS_1,
            "a tie"
        );
        assert_eq!(
            answer("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=x"),
            TEXT_0
        );
        assert_eq!(
            answer("text/plain;version=1.0.0;escaping=bogus"),
            TEXT_1,
            "unknown escaping is dropped"
        );
        // Protobuf only as Prometheus names it: delimited `MetricFamily` messages.
        assert_eq!(
            answer(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
            ),
            TEXT_0
        );
        assert_eq!(
            answer("application/vnd.google.protobuf;encoding=delimited"),
            TEXT_0
        );
        assert_eq!(
            answer("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"),
            if cfg!(feature = "protobuf") {
                PROTOBUF_CONTENT_TYPE
            } else {
                TEXT_0
            }
        );
    }

    /// Random `Accept` headers, built from the pieces real ones are made of and from
    /// random bytes, through the real service: never a panic, never a 5xx, and exactly one
    /// `Content-Type`, naming a format with a body in it.
    #[test]
    fn random_accept_headers_get_a_valid_answer() {
        use http_body_util::BodyExt as _;

        const PIECES: [&str; 24] = [
            "application/openmetrics-text",
            "text/plain",
            "*/*",
            "text/*",
            "application/*",
            "application/vnd.google.protobuf",
            "proto=io.prometheus.client.MetricFamily",
            "encoding=delimited",
            "version=1.0.0",
            "version=0.0.1",
            "version=0.0.4",
            "escaping=allow-utf-8",
            "escaping=underscores",
            "q=0.5",
            "q=1",
            "q=0",
            "q=1.5",
            "q=-1",
            "q=NaN",
            "q=",
            "=",
            ";",
            ",",
            "\"",
        ];
        let mut registry = Registry::default();
        let jobs: prometheus_client::metrics::counter::Counter =
            prometheus_client::metrics::counter::Counter::default();
        registry.register("jobs", "Jobs done", jobs.clone());
        jobs.inc();
        let mut exporter = Exporter::new(Arc::new(registry));
        // xorshift64*: reproducible without a dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut answered = 0;
        for _ in 0..3_000 {
            let mut accept = Vec::new();
            for _ in 0..next() % 12 {
                match next() % 4 {
                    0 => accept.push((next() % 256) as u8),
                    1 => accept.extend_from_slice(b" "),
                    _ => accept.extend_from_slice(PIECES[(next() % 24) as usize].as_bytes()),
                }
            }
            let Ok(value) = HeaderValue::from_bytes(&accept) else {
                continue;
            };
            let request = Request::get("/metrics")
                .header(header::ACCEPT, value)
                .body(())
                .expect("a valid request");
            let Ok(response) = exporter.call(request).into_inner();
            assert!(!response.status().is_server_error(), "{accept:?}");
            let types: Vec<_> = response
                .headers()
                .get_all(header::CONTENT_TYPE)
                .iter()
                .collect();
            assert_eq!(types.len(), 1, "{accept:?}");
            let content_type = types[0].to_str().expect("ASCII");
            assert!(
                [
                    PROMETHEUS_TEXT_CONTENT_TYPE,
                    OPENMETRICS_CONTENT_TYPE,
                    PROTOBUF_CONTENT_TYPE,
                    "text/plain; version=1.0.0; charset=utf-8",
                    "application/openmetrics-text; version=0.0.1; charset=utf-8"
                ]
                .iter()
                .any(|known| content_type.starts_with(known)),
                "{content_type} for {accept:?}"
            );
            // Prometheus 3 picks its parser with Go's `mime.ParseMediaType`, which fails
            // on a repeated parameter: each is there once.
            let mut keys: Vec<&str> = content_type
                .split(';')
                .skip(1)
                .filter_map(|param| param.trim().split_once('=').map(|(key, _)| key))
                .collect();
            let all = keys.len();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), all, "{content_type}");
            let Ok(body) = ready_now(response.into_body().collect());
            assert!(!body.to_bytes().is_empty());
            answered += 1;
        }
        assert!(
            answered > 1_000,
            "most random headers are valid header values: {answered}"
        );
    }

    /// The body of a `Full`, which is ready at once.
    fn ready_now<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("a Full body is ready at once"),
        }
    }

    #[test]
    fn negotiates_gzip() {
        let accept = |value| accepts_gzip(&headers(header::ACCEPT_ENCODING, value));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(accept("gzip"));
        assert!(accept("br, GZIP;q=0.5"));
        assert!(accept("*"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("*, gzip;q=0"));
        assert!(!accept("identity"));
        assert!(!accept("deflate, br"));
    }
}
