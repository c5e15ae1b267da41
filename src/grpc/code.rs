//! The gRPC status codes: names and numbers in one table.

use http::{HeaderMap, StatusCode};

use crate::record::error_id;

/// A gRPC status code (`doc/statuscodes.md` of the gRPC repository), as
/// `rpc_response_status_code` spells it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// Every code, by number, with its name: the one table of both.
const CODES: [(Code, &str); 17] = [
    (Code::Ok, "OK"),
    (Code::Cancelled, "CANCELLED"),
    (Code::Unknown, "UNKNOWN"),
    (Code::InvalidArgument, "INVALID_ARGUMENT"),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (Code::NotFound, "NOT_FOUND"),
    (Code::AlreadyExists, "ALREADY_EXISTS"),
    (Code::PermissionDenied, "PERMISSION_DENIED"),
    (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (Code::Aborted, "ABORTED"),
    (Code::OutOfRange, "OUT_OF_RANGE"),
    (Code::Unimplemented, "UNIMPLEMENTED"),
    (Code::Internal, "INTERNAL"),
    (Code::Unavailable, "UNAVAILABLE"),
    (Code::DataLoss, "DATA_LOSS"),
    (Code::Unauthenticated, "UNAUTHENTICATED"),
];

/// The first error id after the codes': a gRPC family's classifier values start here.
pub(crate) const FIRST_CUSTOM_ERROR: u8 = error_id::FIRST_FAMILY + CODES.len() as u8;

impl Code {
    /// The code numbered `n`, if there is one.
    pub(crate) fn from_number(n: u8) -> Option<Self> {
        CODES.get(usize::from(n)).map(|(code, _)| *code)
    }

    /// The code named `name` (`"NOT_FOUND"`), if there is one.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        CODES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(code, _)| *code)
    }

    /// The code whose name is `name` in camel case, as tonic's `Code` spells it in its
    /// `Debug` form (`DeadlineExceeded`).
    pub(crate) fn from_camel_case(name: &str) -> Option<Self> {
        CODES.iter().map(|(code, _)| *code).find(|code| {
            let mut words = code.as_str().bytes().filter(|byte| *byte != b'_');
            let mut camel = name.bytes();
            loop {
                match (words.next(), camel.next()) {
                    (None, None) => return true,
                    (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
                    _ => return false,
                }
            }
        })
    }

    /// The code tonic's client gives an HTTP/2 error with this code (`REFUSED_STREAM`,
    /// as h2's `Reason` spells it in its `Debug` form), as the gRPC specification maps
    /// them (`doc/PROTOCOL-HTTP2.md`, "Errors").
    pub(crate) fn of_h2_reason(reason: &str) -> Self {
        match reason {
            "NO_ERROR" | "PROTOCOL_ERROR" | "INTERNAL_ERROR" | "FLOW_CONTROL_ERROR"
            | "SETTINGS_TIMEOUT" | "COMPRESSION_ERROR" | "CONNECT_ERROR" => Self::Internal,
            "REFUSED_STREAM" => Self::Unavailable,
            "CANCEL" => Self::Cancelled,
            "ENHANCE_YOUR_CALM" => Self::ResourceExhausted,
            "INADEQUATE_SECURITY" => Self::PermissionDenied,
            _ => Self::Unknown,
        }
    }

    /// Its name, as `rpc_response_status_code` spells it.
    pub(crate) fn as_str(self) -> &'static str {
        CODES[self as usize].1
    }

    /// The error id a call that ended with this code is recorded with.
    #[inline]
    pub(crate) fn error_id(self) -> u8 {
        error_id::FIRST_FAMILY + self as u8
    }

    /// The code of an error id, if it is one of the codes'.
    pub(crate) fn of_error_id(id: u8) -> Option<Self> {
        id.checked_sub(error_id::FIRST_FAMILY)
            .and_then(Self::from_number)
    }

    /// Whether a server's call that ended so failed, by the OpenTelemetry RPC
    /// conventions: the other codes (`NOT_FOUND`, `INVALID_ARGUMENT`, …) are the client's
    /// doing. On the client side every code but `OK` is a failure.
    pub(crate) fn is_server_error(self) -> bool {
        matches!(
            self,
            Self::Unknown
                | Self::DeadlineExceeded
                | Self::Unimplemented
                | Self::Internal
                | Self::Unavailable
                | Self::DataLoss
        )
    }

    /// The `grpc-status` of a header map: a code from 0 to 16; any other value is
    /// `UNKNOWN`, as the gRPC specification says.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get("grpc-status")?.as_bytes();
        let n = match value {
            [digit @ b'0'..=b'9'] => digit - b'0',
            [b'1', digit @ b'0'..=b'6'] => 10 + (digit - b'0'),
            _ => return Some(Self::Unknown),
        };
        Self::from_number(n)
    }

    /// The code of a response that is not HTTP 200 and has no `grpc-status`
    /// (`doc/http-grpc-status-mapping.md` of the gRPC repository).
    pub(crate) fn from_http(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502 | 503 | 504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_agree() {
        for (n, (code, name)) in CODES.iter().enumerate() {
            assert_eq!(*code as usize, n, "{name}");
            assert_eq!(Code::from_number(n as u8), Some(*code));
            assert_eq!(Code::from_name(name), Some(*code));
            assert_eq!(code.as_str(), *name);
            assert_eq!(Code::of_error_id(code.error_id()), Some(*code));
        }
        assert_eq!(Code::from_number(17), None);
        assert_eq!(
            Code::from_camel_case("DeadlineExceeded"),
            Some(Code::DeadlineExceeded)
        );
        assert_eq!(Code::from_camel_case("Ok"), Some(Code::Ok));
        assert_eq!(Code::from_camel_case("Deadline"), None);
        assert_eq!(Code::from_camel_case("DeadlineExceededX"), None);
        assert_eq!(Code::of_h2_reason("REFUSED_STREAM"), Code::Unavailable);
        assert_eq!(Code::of_h2_reason("Reason(0x99)"), Code::Unknown);
        assert_eq!(Code::of_error_id(FIRST_CUSTOM_ERROR), None);
        assert_eq!(Code::of_error_id(error_id::CANCELLED), None);
    }

    #[test]
    fn statuses_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(Code::from_headers(&headers), None);
        for (value, code) in [
            ("0", Code::Ok),
            ("5", Code::NotFound),
            ("16", Code::Unauthenticated),
            ("17", Code::Unknown),
            ("x", Code::Unknown),
            ("", Code::Unknown),
        ] {
            headers.insert("grpc-status", value.parse().expect("a header value"));
            assert_eq!(Code::from_headers(&headers), Some(code), "{value:?}");
        }
        assert_eq!(
            Code::from_http(StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(Code::from_http(StatusCode::IM_A_TEAPOT), Code::Unknown);
    }
}
