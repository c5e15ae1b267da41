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
//! ## Scrape storms
//!
//! As Go's `promhttp` bounds them with `HandlerOpts.MaxRequestsInFlight`, at most
//! [`max_requests_in_flight`](Exporter::max_requests_in_flight) scrapes are served at
//! once (40 by default); the ones beyond get `503 Service Unavailable` at once, without
//! encoding anything.
//!
//! Scrapes that come together share one encode of the registry per format and
//! compression (coalescing), and how fresh a shared answer is stays what it would be
//! alone: a scrape is only given an encode that *started after it arrived*, so its
//! answer holds everything recorded before its request came. Scrapes arriving while an
//! encode runs wait (holding no thread) for the next one, which starts as soon as the
//! running one ends and serves all of them: however many come at once, the registry is
//! encoded at most twice for them.
//!
//! Inside a Tokio runtime (feature `runtime`, on by default), the encode and its
//! compression run on Tokio's blocking pool (`spawn_blocking`), so a scrape holds no
//! worker thread while the registry is encoded; the request's task only waits. Outside
//! one (or without the feature), the encode runs in the `poll` of the scrape that
//! starts it: that poll holds its thread for one encode of the registry, never more.
//!
//! No lock that request recording waits for is held while the registry is encoded.

mod scrape;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tower_service::Service;

use crate::exemplar::splice::{capturing, patch_openmetrics};
use scrape::{Body, Encoded, Kind, Scrape, Scrapes};

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

/// The default of [`Exporter::max_requests_in_flight`].
const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 40;

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
///
/// # Scrape storms
///
/// At most [`max_requests_in_flight`](Self::max_requests_in_flight) scrapes are served at
/// once; beyond, `503 Service Unavailable` at once. Scrapes that come together share one
/// encode per format and compression, and each is answered by an encode that started
/// after it arrived: its answer holds everything recorded before its request. Inside a
/// Tokio runtime (feature `runtime`), the encode runs on the blocking pool, so no worker
/// thread is held by it; elsewhere the scrape that starts it encodes in its `poll`, for
/// one encode of the registry at most.
///
/// Clones share the bound and the encodes; two exporters made by two calls of
/// [`Exporter::new`] or [`Metrics::exporter`](crate::Metrics::exporter) share neither.
#[derive(Clone, Debug)]
pub struct Exporter {
    registry: Arc<Registry>,
    scrapes: Arc<Scrapes>,
    max_in_flight: usize,
}

impl Exporter {
    /// An exporter of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            scrapes: Arc::default(),
            max_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
        }
    }

    /// At most `max` scrapes are served at once, counted over this exporter and its
    /// clones (Go's `promhttp.HandlerOpts.MaxRequestsInFlight`); more get
    /// `503 Service Unavailable` at once, without encoding anything. `0` removes the
    /// bound. `405` answers are not counted.
    ///
    /// Defaults to 40, node_exporter's `--web.max-requests`: far more than the few
    /// Prometheus servers and people with `curl` that scrape at once. Scrapes within the
    /// bound share encodes and wait holding no thread, so the bound is about how many
    /// may wait, not about CPU.
    ///
    /// ```
    /// let metrics = tower_prometheus::Metrics::new();
    /// let app: axum::Router = axum::Router::new()
    ///     .route_service("/metrics", metrics.exporter().max_requests_in_flight(4));
    /// ```
    pub fn max_requests_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// The future answering a request with this method and these headers.
    fn respond(&self, method: &Method, headers: &HeaderMap) -> ExporterFuture {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"only GET and HEAD are allowed\n"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ExporterFuture::ready(response);
        }
        let Some(admitted) = self.scrapes.admit(self.max_in_flight) else {
            let message = format!(
                "the limit of scrapes in flight ({}) is reached, try again later\n",
                self.max_in_flight
            );
            return ExporterFuture::ready(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from(message),
            ));
        };
        let negotiated = negotiate(headers);
        let body = match negotiated.format {
            Format::OpenMetrics100 | Format::OpenMetrics001 => Body::OpenMetrics,
            Format::Text004 | Format::Text100 => Body::Text,
            Format::Protobuf => Body::Protobuf,
        };
        let kind = Kind {
            body,
            gzip: cfg!(feature = "gzip") && accepts_gzip(headers),
        };
        ExporterFuture {
            state: FutureState::Scrape {
                scrape: admitted.scrape(self.registry.clone(), kind),
                content_type: negotiated.content_type(),
                head: method == Method::HEAD,
            },
        }
    }
}

impl<B> Service<Request<B>> for Exporter {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ExporterFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.respond(request.method(), request.headers())
    }
}

/// The response future of [`Exporter`]: ready at once for a `405` or a `503`; otherwise
/// ready when an encode that started after the request arrived has ended (see
/// [scrape storms](Exporter#scrape-storms)). Dropping it before gives its place among
/// the scrapes in flight back.
#[derive(Debug)]
pub struct ExporterFuture {
    state: FutureState,
}

#[derive(Debug)]
enum FutureState {
    Ready(Option<Response<Full<Bytes>>>),
    Scrape {
        scrape: Scrape,
        content_type: String,
        head: bool,
    },
}

impl ExporterFuture {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: FutureState::Ready(Some(response)),
        }
    }
}

impl Future for ExporterFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = match &mut this.state {
            FutureState::Ready(response) => response.take(),
            FutureState::Scrape {
                scrape,
                content_type,
                head,
            } => {
                let Poll::Ready(encoded) = scrape.poll_encoded(cx) else {
                    return Poll::Pending;
                };
                let response = answer(encoded, content_type, *head);
                // The scrape (and its place among those in flight) goes now, not when
                // the future is dropped.
                this.state = FutureState::Ready(None);
                Some(response)
            }
        };
        // Polled again after `Ready`: a 500 rather than a panic.
        Poll::Ready(Ok(response.unwrap_or_else(|| {
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"the response was already given\n"),
            )
        })))
    }
}

/// The answer carrying an encoded body.
fn answer(encoded: Encoded, content_type: &str, head: bool) -> Response<Full<Bytes>> {
    let Some((body, gzipped)) = encoded else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"the metrics could not be encoded\n"),
        );
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::VARY, "accept, accept-encoding");
    // Built from constants and the escaping schemes we know: always a valid value.
    if let Ok(content_type) = HeaderValue::from_str(content_type) {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    if gzipped {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
    }
    let body = if head { Bytes::new() } else { body };
    builder
        .body(Full::new(body))
        .expect("static header names and values are valid")
}

/// The registry as `kind`, into a buffer of about `last_len` bytes, compressed if `kind`
/// says so, and the length before compression; `None` when a collector failed.
fn encode(registry: &Registry, kind: Kind, last_len: usize) -> (Encoded, usize) {
    let Some(body) = encode_body(registry, kind.body, last_len) else {
        return (None, 0);
    };
    let len = body.len();
    let (body, gzipped) = if kind.gzip {
        compress(body)
    } else {
        (body, false)
    };
    (Some((Bytes::from(body), gzipped)), len)
}

/// The registry as `body`, into a buffer of about `last_len` bytes; `None` when a
/// collector failed.
///
/// The HTTP layers' exemplars are left aside by their collectors while the registry is
/// encoded (`prometheus-client` 0.26 has no public way to build its exemplars), then
/// added to the OpenMetrics `_bucket` lines and the protobuf buckets. The capture is per
/// thread: this runs on one thread from start to end.
fn encode_body(registry: &Registry, body: Body, last_len: usize) -> Option<Vec<u8>> {
    let mut text = String::with_capacity(last_len + last_len / 8);
    match body {
        Body::OpenMetrics => {
            let (encoded, exemplars) = capturing(|| text::encode(&mut text, registry));
            encoded.ok()?;
            text = patch_openmetrics(text, &exemplars);
        }
        Body::Text => prometheus_text::encode(&mut text, registry).ok()?,
        #[cfg(feature = "protobuf")]
        Body::Protobuf => return encode_protobuf(registry, last_len),
        #[cfg(not(feature = "protobuf"))]
        // `negotiate` offers protobuf only with the feature.
        Body::Protobuf => return None,
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

fn plain(status: StatusCode, message: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(message));
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

/// The body gzipped; the flag says whether it is (if gzip failed, it is not).
#[cfg(feature = "gzip")]
fn compress(body: Vec<u8>) -> (Vec<u8>, bool) {
    use std::io::Write as _;

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
fn compress(body: Vec<u8>) -> (Vec<u8>, bool) {
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
            let Ok(response) = ready_now(exporter.call(request));
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

    /// A collector counting its encodes, writing their number.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicU64);

    impl prometheus_client::collector::Collector for Counting {
        fn encode(
            &self,
            mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
        ) -> Result<(), std::fmt::Error> {
            use prometheus_client::encoding::EncodeMetric as _;

            let number = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(number as i64);
            let metric =
                encoder.encode_descriptor("encode", "Its number", None, gauge.metric_type())?;
            gauge.encode(metric)
        }
    }

    fn body_of(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt as _;

        let Ok(body) = ready_now(response.into_body().collect());
        String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8")
    }

    /// Outside a runtime, the scrape polled first encodes in its `poll` (ready at once),
    /// and the scrapes that arrived before that encode started take its body without
    /// encoding again; one arriving after it started gets an encode of its own. The
    /// in-flight places are given back as each is answered.
    #[test]
    fn without_a_runtime_scrapes_that_arrived_together_share_an_encode() {
        let counting = Arc::new(Counting::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(counting.clone()));
        let mut exporter = Exporter::new(Arc::new(registry)).max_requests_in_flight(3);
        let get = || Request::get("/metrics").body(()).expect("a valid request");

        let (a, b, c) = (
            exporter.call(get()),
            exporter.call(get()),
            exporter.call(get()),
        );
        let Ok(refused) = ready_now(exporter.call(get()));
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        for future in [a, b, c] {
            let Ok(response) = ready_now(future);
            assert_eq!(response.status(), StatusCode::OK);
            assert!(body_of(response).contains("\nencode 1\n"));
        }
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        let Ok(next) = ready_now(exporter.call(get()));
        assert!(body_of(next).contains("\nencode 2\n"));
        // A future polled again after its answer gives a 500, not a panic.
        let mut again = exporter.call(get());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(std::pin::Pin::new(&mut again).poll(&mut cx).is_ready());
        let Poll::Ready(Ok(response)) = std::pin::Pin::new(&mut again).poll(&mut cx) else {
            panic!("ready again");
        };
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
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
