//! The `error_type` of a failed outgoing request.

use std::error::Error;

use super::future::BoxError;
use crate::classify::{Classify, ErrorType};
use crate::grpc::Code;

/// The default classifier of [`ClientMetricsLayer`](super::ClientMetricsLayer): the
/// `error_type` of an error the inner client returned, from its `source()` chain, in
/// the order tonic's client reads it when it turns the error into the status it returns
/// (`Status::from_error`), so that a gRPC call's `rpc_response_status_code` is the code
/// the calling code was given.
///
/// | found in the chain, from the top | `error_type` | gRPC code |
/// |---|---|---|
/// | a tonic `Status` | its code's name (`UNAVAILABLE`) | that code |
/// | tonic's `TimeoutExpired`, tower's or tokio's `Elapsed` | `timeout` | `DEADLINE_EXCEEDED` (tonic says `CANCELLED`, "Timeout expired": the client's own deadline passed, which its server records `DEADLINE_EXCEEDED`) |
/// | tonic's or hyper-util's `ConnectError`: the connection could not be made | `connection_refused` (with a refused `std::io::Error` inside), else `connect_error` | `UNAVAILABLE` |
/// | a hyper error that cancelled the request (the connection closed before it was answered) | `connection_closed` | `CANCELLED` |
/// | a hyper error of the HTTP/2 keep-alive timeout | `keepalive_timeout` | `UNAVAILABLE` |
/// | a hyper error from an HTTP/2 reset or GOAWAY of the server with an error code | the code's name as tonic maps it (`REFUSED_STREAM`: `UNAVAILABLE`, `ENHANCE_YOUR_CALM`: `RESOURCE_EXHAUSTED`, most others `INTERNAL`) | that code |
/// | another hyper error, or a `std::io::Error` under one: the connection broke with the call in flight | `connection_error` | `UNKNOWN` |
/// | a `std::io::Error` alone: of kind `ConnectionRefused`, `TimedOut`, other | `connection_refused`, `timeout`, `connection_error` | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `UNKNOWN` |
/// | anything else | `_OTHER` | `UNKNOWN` |
///
/// The library depends on neither tonic, tower, hyper nor hyper-util: their errors are
/// told by their type name in their `Debug` form (`Status { code: … }`,
/// `TimeoutExpired(())`, `Elapsed(())`, `ConnectError(..)`, `hyper::Error(Canceled, ..)`,
/// h2's `Error { kind: Reset(.., REFUSED_STREAM, ..) }`), read only when a request
/// failed. `tests/grpc.rs` checks the codes against tonic's own, for a server that
/// refuses the connection, accepts and closes it, dies with a call in flight, or resets
/// the call.
///
/// ```
/// use tower_prometheus::client_metrics::ClientErrors;
/// use tower_prometheus::http_metrics::Classify;
///
/// let refused: Box<dyn std::error::Error + Send + Sync> =
///     Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
/// assert_eq!(ClientErrors.classify_error(&refused).as_str(), "connection_refused");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientErrors;

impl Classify<BoxError> for ClientErrors {
    fn classify_error(&self, error: &BoxError) -> ErrorType {
        let error: &(dyn Error + 'static) = &**error;
        // What is left when nothing in the chain decides: an I/O error's kind.
        let mut io_kind = None;
        let mut under_hyper = false;
        for error in chain(error) {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                io_kind.get_or_insert(io.kind());
                continue;
            }
            let debug = format!("{error:?}");
            if let Some(code) = tonic_status_code(&debug) {
                return ErrorType::new(code.as_str());
            }
            if debug.starts_with("Elapsed") || debug.starts_with("TimeoutExpired") {
                return ErrorType::new("timeout");
            }
            if debug.starts_with("ConnectError") {
                let refused = chain(error).any(|error| {
                    error
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
                });
                return ErrorType::new(if refused {
                    "connection_refused"
                } else {
                    "connect_error"
                });
            }
            if let Some(kind) = debug.strip_prefix("hyper::Error(") {
                under_hyper = true;
                if let Some(error_type) = hyper_error(kind, error) {
                    return error_type;
                }
            }
        }
        match io_kind {
            _ if under_hyper => ErrorType::new("connection_error"),
            Some(std::io::ErrorKind::ConnectionRefused) => ErrorType::new("connection_refused"),
            Some(std::io::ErrorKind::TimedOut) => ErrorType::new("timeout"),
            Some(_) => ErrorType::new("connection_error"),
            None => ErrorType::OTHER,
        }
    }
}

/// The code of a tonic `Status`, from its `Debug` form: `Status { code: NotFound, … }`.
fn tonic_status_code(debug: &str) -> Option<Code> {
    let rest = debug.strip_prefix("Status { code: ")?;
    let name = rest.split([',', ' ', '}']).next()?;
    Code::from_camel_case(name)
}

/// What tonic's client makes of a hyper error (its `Debug` form after
/// `hyper::Error(`): a cancelled request, the keep-alive timeout, or the HTTP/2 error
/// code of its source; `None` when it makes nothing of it (it reads on down the chain).
fn hyper_error(kind: &str, error: &(dyn Error + 'static)) -> Option<ErrorType> {
    // hyper's `is_timeout`: its `TimedOut` anywhere below.
    if chain(error)
        .skip(1)
        .any(|source| format!("{source:?}") == "TimedOut")
    {
        return Some(ErrorType::new("keepalive_timeout"));
    }
    if kind.starts_with("Canceled") {
        return Some(ErrorType::new("connection_closed"));
    }
    // Its immediate source, when it is h2's error of a reset or GOAWAY with a code.
    let source = format!("{:?}", error.source()?);
    let rest = source.strip_prefix("Error { kind: ")?;
    let rest = rest
        .strip_prefix("Reset(")
        .or_else(|| rest.strip_prefix("GoAway("))?;
    let reason = rest.split(", ").nth(1)?;
    Some(ErrorType::new(Code::of_h2_reason(reason).as_str()))
}
/// An error and its sources.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |error: &&'a (dyn Error + 'static)| {
        (*error).source()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Elapsed(());

    impl std::fmt::Display for Elapsed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request timed out")
        }
    }

    impl Error for Elapsed {}

    #[derive(Debug)]
    struct Wrapper(BoxError);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    /// An error whose `Debug` form is `debug`, over `source`.
    struct Named(&'static str, Option<BoxError>);

    impl std::fmt::Debug for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Named {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|source| source as &(dyn Error + 'static))
        }
    }

    fn named(debug: &'static str, source: Option<BoxError>) -> BoxError {
        Box::new(Named(debug, source))
    }

    #[test]
    fn errors_as_tonic_reads_them() {
        let classify = |error: BoxError| ClientErrors.classify_error(&error).as_str().to_owned();
        let io = |kind| -> BoxError { Box::new(std::io::Error::from(kind)) };
        let transport = |source| named("tonic::transport::Error(Transport, ..)", Some(source));
        use std::io::ErrorKind::*;
        // A connection that broke with the call in flight: not a connect error.
        let reset = transport(named(
            "hyper::Error(Io, Kind(ConnectionReset))",
            Some(io(ConnectionReset)),
        ));
        assert_eq!(classify(reset), "connection_error");
        let closed = transport(named(
            "hyper::Error(Canceled, \"connection closed\")",
            Some("connection closed".into()),
        ));
        assert_eq!(classify(closed), "connection_closed");
        let keepalive = named(
            "hyper::Error(Http2, TimedOut)",
            Some(named("TimedOut", None)),
        );
        assert_eq!(classify(keepalive), "keepalive_timeout");
        let refused_stream = named(
            "hyper::Error(Http2, Error { kind: Reset(StreamId(1), REFUSED_STREAM, Remote) })",
            Some(named(
                "Error { kind: Reset(StreamId(1), REFUSED_STREAM, Remote) }",
                None,
            )),
        );
        assert_eq!(classify(refused_stream), "UNAVAILABLE");
        let go_away = named(
            "hyper::Error(Http2, ..)",
            Some(named(
                "Error { kind: GoAway(b\"\", ENHANCE_YOUR_CALM, Remote) }",
                None,
            )),
        );
        assert_eq!(classify(go_away), "RESOURCE_EXHAUSTED");
        // Connect errors, whatever the I/O error inside.
        let connect = |kind| {
            transport(named(
                "ConnectError(\"tcp connect error\", ..)",
                Some(io(kind)),
            ))
        };
        assert_eq!(classify(connect(ConnectionRefused)), "connection_refused");
        assert_eq!(classify(connect(TimedOut)), "connect_error");
        assert_eq!(classify(connect(PermissionDenied)), "connect_error");
        // A status found in the chain is the status.
        let status = named(
            "Status { code: FailedPrecondition, message: \"no\", source: None }",
            None,
        );
        assert_eq!(classify(transport(status)), "FAILED_PRECONDITION");
        assert_eq!(classify(named("TimeoutExpired(())", None)), "timeout");
        assert_eq!(classify(io(TimedOut)), "timeout");
        assert_eq!(classify(io(BrokenPipe)), "connection_error");
    }

    #[test]
    fn errors_by_their_chain() {
        let classify = |error: BoxError| ClientErrors.classify_error(&error).as_str().to_owned();
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(Box::new(Wrapper(Box::new(refused)))),
            "connection_refused"
        );
        assert_eq!(
            classify(Box::new(Wrapper(Box::new(Elapsed(()))))),
            "timeout"
        );
        assert_eq!(classify("something else".into()), "_OTHER");
    }
}
