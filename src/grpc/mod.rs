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

/// How long after its start a call's deadline passes, from its `grpc-timeout` header,
/// less a tenth of the timeout (at most 20 ms): the client and tonic's own timer
/// (outside the layer) started it a little earlier, and cancel the call when their clock
/// says so; a caller's timer outside the client layer too.
///
/// The value is read as tonic reads it, which is what applies the deadline: at most 8
/// characters of a decimal number, optionally after a `+` (Rust's integer parsing, a
/// little more than the specification's digits), then a unit: `H`, `M`, `S`, `m`, `u`,
/// `n`.
pub(crate) fn deadline(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (unit, number) = value.split_last()?;
    let digits = number.strip_prefix(b"+").unwrap_or(number);
    if digits.is_empty() || number.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
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
/// call's verdict is its status (the classifier still names inner errors). `SERVER`:
/// read on the server's side ([`status`]).
pub(crate) fn read_head<C, const SERVER: bool>(
    _: &C,
    guard: &mut Guard,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<ReadEnd<C>> {
    if let Some(code) = self::status::<SERVER>(headers) {
        guard.fail(code.error_id());
        return None;
    }
    if status != StatusCode::OK {
        guard.fail(Code::from_http(status).error_id());
        return None;
    }
    Some(read_end::<C, SERVER>)
}

/// Reads the end of a gRPC response body: the `grpc-status` of its trailers; `UNKNOWN`
/// without one.
fn read_end<C, const SERVER: bool>(_: &C, guard: &mut Guard, trailers: Option<&HeaderMap>) {
    let code = trailers.and_then(status::<SERVER>).unwrap_or(Code::Unknown);
    guard.fail(code.error_id());
}

/// The status in a response head or trailers. On the server's side (`SERVER`), a status
/// that says the client's request stream broke or ended before its message
/// ([`request_broke`]) is `CANCELLED`: the client gave up on the call, whatever code the
/// server answered with, and an error a client causes at will is not the server's.
fn status<const SERVER: bool>(headers: &HeaderMap) -> Option<Code> {
    let code = Code::from_headers(headers)?;
    if SERVER && code != Code::Ok && request_broke(headers) {
        return Some(Code::Cancelled);
    }
    Some(code)
}

/// The `grpc-message`s of tonic's server for a call whose request stream broke or ended
/// before a whole message: what it answers a client that reset its stream in the middle
/// of the request (RST_STREAM `CANCEL` or `NO_ERROR`: hyper ends the request body as if
/// it had ended; any other reason, or a connection lost: the body fails), or that ended
/// it early. The layer cannot see the reset itself: the body is the inner service's
/// (wrapping it would change the request type users' services take), and hyper checks
/// for a reset only while the service's future is pending, while tonic answers in the
/// poll that saw the body end. `tests/grpc.rs` sends such resets as raw HTTP/2 frames to a
/// real tonic server, so that a tonic release that words them otherwise fails there.
const BROKEN_REQUEST: [&str; 3] = [
    // A unary call's request stream ended without a message.
    "Missing request message.",
    // It ended inside a message (its length prefix announced more).
    "Unexpected EOF decoding stream.",
    // The request body failed: a reset with an error code, a connection lost.
    "h2 protocol error: error reading a body from connection",
];

/// Whether the `grpc-message` of `headers` (percent-encoded, as the specification says)
/// is one of [`BROKEN_REQUEST`].
fn request_broke(headers: &HeaderMap) -> bool {
    let Some(message) = headers.get("grpc-message") else {
        return false;
    };
    let message = message.as_bytes();
    BROKEN_REQUEST
        .iter()
        .any(|text| percent_decoded_starts_with(message, text.as_bytes()))
}

/// Whether `encoded`, its `%XX` escapes decoded, starts with `prefix`.
fn percent_decoded_starts_with(encoded: &[u8], prefix: &[u8]) -> bool {
    let hex = |digit: u8| (digit as char).to_digit(16).map(|n| n as u8);
    let mut rest = encoded;
    for expected in prefix {
        let byte = match rest {
            [b'%', high, low, tail @ ..] => match (hex(*high), hex(*low)) {
                (Some(high), Some(low)) => {
                    rest = tail;
                    high << 4 | low
                }
                _ => return false,
            },
            [byte, tail @ ..] => {
                rest = tail;
                *byte
            }
            [] => return false,
        };
        if byte != *expected {
            return false;
        }
    }
    true
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
    fn broken_requests_are_cancelled_on_the_server_side_only() {
        let headers = |code: &str, message: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", code.parse().expect("a header value"));
            headers.insert("grpc-message", message.parse().expect("a header value"));
            headers
        };
        for message in [
            "Missing%20request%20message.",
            "Missing request message.",
            "Unexpected%20EOF%20decoding%20stream.",
            "h2%20protocol%20error:%20error%20reading%20a%20body%20from%20connection",
            "h2%20protocol%20error%3A%20error%20reading%20a%20body%20from%20connection",
        ] {
            let broken = headers("13", message);
            assert_eq!(status::<true>(&broken), Some(Code::Cancelled), "{message}");
            assert_eq!(status::<false>(&broken), Some(Code::Internal), "{message}");
        }
        for (code, message, expected) in [
            ("13", "Missing%20request", Code::Internal),
            ("13", "as%2", Code::Internal),
            ("13", "%zzMissing", Code::Internal),
            ("13", "", Code::Internal),
            ("0", "Missing%20request%20message.", Code::Ok),
            (
                "2",
                "Unexpected%20EOF%20decoding%20stream.",
                Code::Cancelled,
            ),
        ] {
            assert_eq!(
                status::<true>(&headers(code, message)),
                Some(expected),
                "{code} {message}"
            );
        }
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
        // tonic applies a `+` before the number (issue 26, point 7).
        assert_eq!(deadline("+100m"), Some(Duration::from_millis(90)));
        assert_eq!(
            deadline("+9999999n"),
            Some(Duration::from_nanos(9_999_999 - 999_999))
        );
        assert_eq!(deadline("1S"), Some(Duration::from_millis(980)));
        assert_eq!(
            deadline("2H"),
            Some(Duration::from_secs(7200) - Duration::from_millis(20))
        );
        for bad in [
            "",
            "m",
            "+m",
            "123456789m",
            "+12345678m",
            "++1m",
            "1+m",
            "10x",
            "-1m",
            "1.5S",
        ] {
            assert_eq!(deadline(bad), None, "{bad:?}");
        }
    }
}
