//! gRPC calls, served and made: the status from the response headers or trailers, and
//! the OpenTelemetry RPC families they are recorded in.
//!
//! The server side is part of [`HttpMetricsLayer`](crate::HttpMetricsLayer): a request
//! with `content-type: application/grpc` (or `application/grpc+proto`, …) is recorded in
//! `rpc_server_call_duration_seconds` instead of the HTTP families. The client side is
//! [`ClientMetricsLayer`](crate::ClientMetricsLayer). Both are families over the
//! recording engine (`crate::record`): [`ServerCalls`] (`served.rs`) and [`ClientCalls`]
//! (`sent.rs`). Both read the status as a gRPC client does ([`read_head`]): from
//! `grpc-status` in the response head (a trailers-only response, what tonic sends for an
//! error returned before any message), else from the trailers frame at the end of the
//! body; a body that ends without one is `UNKNOWN`, a response that is not HTTP 200 and
//! has no `grpc-status` gets the code the gRPC specification maps its status to
//! ([`Code`]).

mod code;
mod encode;
mod sent;
mod served;

use std::time::Duration;

use http::{HeaderMap, Request, StatusCode, header};

use crate::record::{Field, Guard, Key, ReadEnd};

pub(crate) use code::Code;
pub(crate) use sent::ClientCalls;
pub(crate) use served::ServerCalls;

/// The value of `rpc_system_name`.
pub(crate) const SYSTEM: &str = "grpc";

/// The metric families of the RPC recorders, reserved in [`Metrics`](crate::Metrics).
pub(crate) const FAMILIES: [&str; 3] = [
    "rpc_server_call_duration_seconds",
    "rpc_server_active_calls",
    "rpc_client_call_duration_seconds",
];

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

/// A call's deadline in the key it starts with: milliseconds after its start, or, past
/// what the field holds in milliseconds, seconds (its top bit says which); 0 is none. The
/// family compares it with the call's duration when a cancelled call ends: cancelled past
/// its deadline, a call is `DEADLINE_EXCEEDED`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeadlineField {
    value: Field,
    in_seconds: Field,
}

impl DeadlineField {
    /// The `bits` bits after `previous`.
    pub(crate) const fn after(previous: Field, bits: u32) -> Self {
        let value = Field::after(previous, bits - 1);
        Self {
            value,
            in_seconds: Field::after(value, 1),
        }
    }

    /// `key` with the deadline of `headers` (`grpc-timeout`), if it has one.
    pub(crate) fn set(self, key: Key, headers: &HeaderMap) -> Key {
        let Some(timeout) = deadline(headers) else {
            return key;
        };
        // Rounded up: a call is past its deadline only once it has surely passed.
        let millis = timeout.as_nanos().div_ceil(1_000_000).max(1);
        if millis <= u128::from(self.value.max()) {
            return self.value.set(key, millis as u64);
        }
        let seconds = u128::from(timeout.as_secs()) + u128::from(timeout.subsec_nanos() > 0);
        let seconds = seconds.min(u128::from(self.value.max())) as u64;
        self.in_seconds.set(self.value.set(key, seconds), 1)
    }

    /// Whether a call that started with `key` and lasted `seconds` is past its deadline.
    pub(crate) fn passed(self, key: Key, seconds: f64) -> bool {
        let value = self.value.get(key);
        if value == 0 {
            return false;
        }
        let limit = if self.in_seconds.get(key) == 1 {
            value as f64
        } else {
            value as f64 / 1000.0
        };
        seconds >= limit
    }

    /// `key` without the deadline: what is left are labels.
    pub(crate) fn clear(self, key: Key) -> Key {
        self.in_seconds.clear(self.value.clear(key))
    }
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

/// Reads a gRPC response head into the guard, as a gRPC client does: its `grpc-status`
/// when it has one (a trailers-only response), the code of its HTTP status when that is
/// not 200, else the trailers decide ([`read_end`]). The classifier has no say: a gRPC
/// call's verdict is its status (the classifier still names inner errors).
pub(crate) fn read_head<C>(
    _: &C,
    guard: &mut Guard,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<ReadEnd<C>> {
    if let Some(code) = Code::from_headers(headers) {
        guard.fail(code.error_id());
        return None;
    }
    if status != StatusCode::OK {
        guard.fail(Code::from_http(status).error_id());
        return None;
    }
    Some(read_end::<C>)
}

/// Reads the end of a gRPC response body: the `grpc-status` of its trailers; `UNKNOWN`
/// without one.
fn read_end<C>(_: &C, guard: &mut Guard, trailers: Option<&HeaderMap>) {
    let code = trailers
        .and_then(Code::from_headers)
        .unwrap_or(Code::Unknown);
    guard.fail(code.error_id());
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
    fn deadlines_travel_in_the_key_in_milliseconds_or_seconds() {
        const BEFORE: Field = Field::first(40);
        const DEADLINE: DeadlineField = DeadlineField::after(BEFORE, 24);
        let key = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("a header value"));
            DEADLINE.set(BEFORE.set(Key(0), 77), &headers)
        };
        // 100 ms less its tenth: 90 ms.
        let short = key("100m");
        assert!(!DEADLINE.passed(short, 0.089));
        assert!(DEADLINE.passed(short, 0.090));
        assert_eq!(BEFORE.get(short), 77, "the other fields are left alone");
        assert_eq!(DEADLINE.clear(short), BEFORE.set(Key(0), 77));
        // 10 hours do not fit in 23 bits of milliseconds: seconds, less 20 ms, rounded up.
        let long = key("10H");
        assert!(!DEADLINE.passed(long, 35_998.0));
        assert!(DEADLINE.passed(long, 36_000.0));
        // Past what seconds hold: the longest the field holds.
        let longest = key("99999999H");
        assert!(!DEADLINE.passed(longest, 1e6));
        // None.
        let none = DEADLINE.set(Key(0), &HeaderMap::new());
        assert!(!DEADLINE.passed(none, 1e9));
        let zero = key("0S");
        assert!(DEADLINE.passed(zero, 0.001), "a deadline already past");
    }

    #[test]
    fn deadlines_from_grpc_timeout() {
        let deadline = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("a header value"));
            deadline(&headers)
        };
        assert_eq!(deadline("100m"), Some(Duration::from_millis(90)));
        assert_eq!(deadline("1S"), Some(Duration::from_millis(980)));
        assert_eq!(
            deadline("2H"),
            Some(Duration::from_secs(7200) - Duration::from_millis(20))
        );
        for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S"] {
            assert_eq!(deadline(bad), None, "{bad:?}");
        }
    }
}
