//! The `/metrics` endpoint: a tower [`Service`] that encodes a [`Registry`].
//!
//! - `Accept: application/openmetrics-text` gets OpenMetrics 1.0 text (`# EOF` last);
//!   anything else (no `Accept`, `text/plain`, `*/*`, or a type it cannot produce) gets
//!   the Prometheus text format 0.0.4, which every scraper and `promtool` read. The
//!   highest `q` wins; ties go to OpenMetrics.
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

/// The `Content-Type` of OpenMetrics text 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

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
        let openmetrics = prefers_openmetrics(headers);
        let last_len = self.last_len.load(Ordering::Relaxed);
        let mut text = String::with_capacity(last_len + last_len / 8);
        let encoded = if openmetrics {
            text::encode(&mut text, &self.registry)
        } else {
            prometheus_text::encode(&mut text, &self.registry)
        };
        if encoded.is_err() {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded\n",
            );
        }
        self.last_len.store(text.len(), Ordering::Relaxed);
        let (body, gzipped) = compress(text.into_bytes(), headers);
        let content_type = if openmetrics {
            OPENMETRICS_CONTENT_TYPE
        } else {
            PROMETHEUS_TEXT_CONTENT_TYPE
        };
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

/// Whether the `Accept` header ranks OpenMetrics 1.0 (or 0.0.1, which 1.0 text also
/// satisfies) at least as high as the Prometheus text format.
fn prefers_openmetrics(headers: &HeaderMap) -> bool {
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for (media_type, params, q) in weighted(headers, header::ACCEPT) {
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            let version = params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("version"))
                .map(|(_, version)| *version);
            if matches!(version, None | Some("1.0.0" | "0.0.1")) {
                openmetrics = openmetrics.max(q);
            }
        } else if ["text/plain", "text/*", "*/*"]
            .iter()
            .any(|range| media_type.eq_ignore_ascii_case(range))
        {
            text = text.max(q);
        }
    }
    openmetrics > 0.0 && openmetrics >= text
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

    #[test]
    fn negotiates_the_format() {
        let accept = |value| prefers_openmetrics(&headers(header::ACCEPT, value));
        assert!(!prefers_openmetrics(&HeaderMap::new()));
        assert!(!accept("*/*"));
        assert!(!accept("text/plain"));
        assert!(!accept("application/json"));
        assert!(accept("application/openmetrics-text"));
        assert!(accept("application/openmetrics-text; version=1.0.0"));
        assert!(!accept("application/openmetrics-text; version=2.0.0"));
        assert!(!accept("application/openmetrics-text;q=0"));
        assert!(!accept(
            "application/openmetrics-text;q=0.4,text/plain;q=0.9"
        ));
        // What Prometheus 3 sends by default.
        assert!(accept(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
             application/openmetrics-text;version=0.0.1;q=0.4,\
             text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
             text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
        ));
        assert!(!accept(
            "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=x"
        ));
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
