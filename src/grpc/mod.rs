//! gRPC calls, served and made: the status from the response headers or trailers, and
//! the OpenTelemetry RPC families they are recorded in.
//!
//! The server side is part of [`HttpMetricsLayer`](crate::HttpMetricsLayer): a request
//! with `content-type: application/grpc` (or `application/grpc+proto`, …) is recorded in
//! `rpc_server_call_duration_seconds` instead of the HTTP families. The client side is
//! [`ClientMetricsLayer`](crate::client::ClientMetricsLayer). Both read the status as a
//! gRPC client does, through the machinery of the HTTP layer (`http_metrics/future.rs`
//! and `body.rs`): from `grpc-status` in the response head (a trailers-only response,
//! what tonic sends for an error returned before any message), else from the trailers
//! frame at the end of the body; a body that ends without one is `UNKNOWN`, a response
//! that is not HTTP 200 and has no `grpc-status` gets the code the gRPC specification
//! maps its status to.

pub(crate) mod encode;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request, StatusCode, header};
use prometheus_client::registry::Registry;

use crate::histogram::Buckets;

use crate::http_metrics::Naming;
use crate::http_metrics::labels::{Method, SeriesKey, UrlScheme, error_id};
use crate::http_metrics::recorder::{Config, Kind, Recorder};
use crate::http_metrics::{Classified, ErrorType};

/// The value of `rpc_system_name`.
pub(crate) const SYSTEM: &str = "grpc";

/// The gRPC status codes by number, as `rpc_response_status_code` spells them.
pub(crate) const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

const OK: u8 = 0;
const CANCELLED: u8 = 1;
const UNKNOWN: u8 = 2;
const UNIMPLEMENTED: u8 = 12;

/// The codes a server's call failed with, by the conventions: the others (`NOT_FOUND`,
/// `INVALID_ARGUMENT`, …) are the client's doing. On the client side every code but
/// `OK` is a failure.
const SERVER_ERRORS: [u8; 6] = [2, 4, 12, 13, 14, 15];

/// The route id of `_OTHER`, the method of calls to a method the server does not have
/// (answered `UNIMPLEMENTED`): the first route of every RPC recorder.
pub(crate) const OTHER_METHOD: u32 = 1;

/// The metric families of the RPC recorders, reserved in [`Metrics`](crate::Metrics).
pub(crate) const FAMILIES: [&str; 4] = [
    "rpc_server_call_duration_seconds",
    "rpc_server_active_calls",
    "rpc_client_call_duration_seconds",
    "http_client_request_duration_seconds",
];

/// The error id of `DEADLINE_EXCEEDED`.
pub(crate) const DEADLINE_EXCEEDED_ID: u8 = error_id::FIRST_CUSTOM + 4;

/// How long after its start a call's deadline passes, from its `grpc-timeout` header (at
/// most 8 digits and a unit: `H`, `M`, `S`, `m`, `u`, `n`), less a tenth of the timeout
/// (at most 20 ms): the client and tonic's own timer (outside the layer) started it a
/// little earlier, and cancel the call when their clock says so.
pub(crate) fn deadline(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    let timeout = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    };
    Some(timeout - (timeout / 10).min(Duration::from_millis(20)))
}

/// The error id of gRPC code `code`: codes are interned first, in order, by
/// [`prepare`].
#[inline]
fn code_id(code: u8) -> u8 {
    error_id::FIRST_CUSTOM + code
}

/// The gRPC code of an error id, if it is one.
pub(crate) fn code_of(id: u8) -> Option<u8> {
    id.checked_sub(error_id::FIRST_CUSTOM)
        .filter(|code| usize::from(*code) < CODES.len())
}

/// A recorder of an RPC or client `kind`, its families registered in `registry`.
pub(crate) fn recorder(
    kind: Kind,
    duration_buckets: Buckets,
    max_series: usize,
    registry: &mut Registry,
) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::new(Config {
        kind,
        names: Naming::OpenTelemetry.names(),
        grouped_status: false,
        duration_buckets,
        size_buckets: None,
        max_series,
        excluded_paths: Vec::new(),
        excluded_prefixes: Vec::new(),
        excluded_routes: Vec::new(),
        nested_services: Vec::new(),
        // Native buckets and exemplars are the HTTP duration histogram's only (for now).
        native_buckets: None,
        exemplars: None,
    }));
    if kind != Kind::HttpClient {
        prepare(&recorder);
    }
    registry.register_collector(Box::new(encode::Families(recorder.clone())));
    recorder
}

/// Interns the codes (error ids from [`error_id::FIRST_CUSTOM`], in order) and the
/// `_OTHER` method (route [`OTHER_METHOD`]) in a new recorder of an RPC kind.
pub(crate) fn prepare(recorder: &Recorder) {
    for code in CODES {
        recorder.error_id(&ErrorType::new(code));
    }
    let other = recorder.route(Some("_OTHER"), || "");
    debug_assert_eq!(other.id, OTHER_METHOD);
}

/// Whether a request is a gRPC call: a `POST` with `content-type: application/grpc`,
/// alone or followed by `+` or `;` (`application/grpc+proto`). gRPC-Web
/// (`application/grpc-web`) sends its trailers in the body: it stays HTTP.
#[inline]
pub(crate) fn is_grpc<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::POST && is_grpc_content_type(request.headers())
}

fn is_grpc_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Some(rest) = value.as_bytes().strip_prefix(b"application/grpc") else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';'))
}

/// The full method of a call, `package.Service/Method`: its path without the leading
/// `/`.
#[inline]
pub(crate) fn full_method(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// The classification of a gRPC response head: its `grpc-status` when it has one (a
/// trailers-only response), the code of its HTTP status when that is not 200, else
/// decided by the trailers.
pub(crate) fn classify_head(status: StatusCode, headers: &HeaderMap) -> Classified {
    if let Some(code) = grpc_status(headers) {
        return Classified::Failure(code_type(code));
    }
    if status != StatusCode::OK {
        return Classified::Failure(code_type(code_of_http(status)));
    }
    Classified::AtEnd
}

/// The classification at the end of a gRPC response body: the `grpc-status` of its
/// trailers; `UNKNOWN` without one. Of the shape of
/// [`Classify::classify_end`](crate::http_metrics::Classify::classify_end), so that the
/// body calls it in its place.
pub(crate) fn classify_end<C>(_: &C, trailers: Option<&HeaderMap>) -> Option<ErrorType> {
    Some(code_type(trailers.and_then(grpc_status).unwrap_or(UNKNOWN)))
}

/// A code as the `ErrorType` the guard interns: [`prepare`] made its id
/// [`code_id`]`(code)`.
fn code_type(code: u8) -> ErrorType {
    ErrorType::new(CODES[usize::from(code)])
}

/// The `grpc-status` of a header map: a code from 0 to 16; any other number is
/// `UNKNOWN`, as the gRPC specification says.
fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    let value = headers.get("grpc-status")?.as_bytes();
    let code = match value {
        [digit @ b'0'..=b'9'] => digit - b'0',
        [b'1', digit @ b'0'..=b'6'] => 10 + (digit - b'0'),
        _ => UNKNOWN,
    };
    Some(code)
}

/// The gRPC code of a response that is not HTTP 200 and has no `grpc-status`
/// (`doc/http-grpc-status-mapping.md` of the gRPC repository).
fn code_of_http(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => 14,
        _ => UNKNOWN,
    }
}

/// The key of the series a finished call of a recorder of `kind` is recorded in: only
/// the labels its families have are kept, and statuses that mean the same are made one.
///
/// On the server side, a call answered `UNIMPLEMENTED` is the method `_OTHER` (the
/// conventions' value for a method the server does not know): the method comes from the
/// request path, which clients choose. A call cancelled by the layer (its future or
/// body dropped) is `CANCELLED`.
#[inline]
pub(crate) fn series_key(kind: Kind, key: SeriesKey) -> SeriesKey {
    let error = match key.error() {
        error_id::CANCELLED if kind != Kind::HttpClient => code_id(CANCELLED),
        error_id::NONE if kind != Kind::HttpClient => code_id(UNKNOWN),
        error => error,
    };
    match kind {
        Kind::HttpClient => SeriesKey::request(
            http::Version::HTTP_11,
            key.method(),
            UrlScheme::Http,
            key.route(),
        )
        .finish(key.status(), error),
        _ => {
            let route = if kind == Kind::RpcServer && error == code_id(UNIMPLEMENTED) {
                OTHER_METHOD
            } else {
                key.route()
            };
            // The scheme stays: a client's default port depends on it.
            let scheme = match kind {
                Kind::RpcClient => key.scheme(),
                _ => UrlScheme::Http,
            };
            SeriesKey::request(http::Version::HTTP_2, Method::Post, scheme, route).finish(0, error)
        }
    }
}

/// `rpc_response_status_code` and `error_type` of a finished call's error id, on the
/// server (`client` false) or client side; `custom` gives a classifier's value.
pub(crate) fn status_labels<'a>(
    id: u8,
    client: bool,
    custom: impl FnOnce(u8) -> Option<&'a str>,
) -> (&'static str, Option<&'a str>) {
    if let Some(code) = code_of(id) {
        let name = CODES[usize::from(code)];
        let failed = if client {
            code != OK
        } else {
            SERVER_ERRORS.contains(&code)
        };
        return (name, failed.then_some(name));
    }
    // The call ended without a status: the layer's own error, or the classifier's (a
    // client's: its code is the one a gRPC client reports for that error).
    let error = match id {
        id if id < error_id::FIRST_CUSTOM => error_id::BUILT_IN[usize::from(id)],
        id => custom(id).unwrap_or("_OTHER"),
    };
    let code = if client {
        crate::client_metrics::code_of_error(error)
    } else {
        CODES[usize::from(UNKNOWN)]
    };
    (code, Some(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let request = |content_type: &str| {
            Request::post("/p.S/M")
                .header(header::CONTENT_TYPE, content_type)
                .body(())
                .expect("a valid request")
        };
        assert!(is_grpc(&request("application/grpc")));
        assert!(is_grpc(&request("application/grpc+proto")));
        assert!(is_grpc(&request("application/grpc;charset=utf-8")));
        assert!(!is_grpc(&request("application/grpc-web")));
        assert!(!is_grpc(&request("application/json")));
        let get = Request::get("/p.S/M")
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(())
            .expect("a valid request");
        assert!(!is_grpc(&get));
    }

    #[test]
    fn statuses_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(classify_head(StatusCode::OK, &headers), Classified::AtEnd);
        assert_eq!(
            classify_head(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Classified::Failure(ErrorType::new("UNAVAILABLE"))
        );
        for (value, code) in [
            ("0", "OK"),
            ("5", "NOT_FOUND"),
            ("16", "UNAUTHENTICATED"),
            ("17", "UNKNOWN"),
            ("x", "UNKNOWN"),
        ] {
            headers.insert("grpc-status", value.parse().expect("a header value"));
            assert_eq!(
                classify_head(StatusCode::OK, &headers),
                Classified::Failure(ErrorType::new(code)),
                "{value}"
            );
        }
        assert_eq!(classify_end(&(), None), Some(ErrorType::new("UNKNOWN")));
    }

    #[test]
    fn which_codes_are_failures() {
        let none = |_| None;
        assert_eq!(status_labels(code_id(5), false, none), ("NOT_FOUND", None));
        assert_eq!(
            status_labels(code_id(5), true, none),
            ("NOT_FOUND", Some("NOT_FOUND"))
        );
        assert_eq!(
            status_labels(code_id(13), false, none),
            ("INTERNAL", Some("INTERNAL"))
        );
        assert_eq!(status_labels(code_id(0), true, none), ("OK", None));
        assert_eq!(
            status_labels(error_id::PANIC, false, none),
            ("UNKNOWN", Some("panic"))
        );
    }
}
