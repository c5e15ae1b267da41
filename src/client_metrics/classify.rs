//! The `error_type` of a failed outgoing request.

use std::error::Error;

use super::future::BoxError;
use crate::classify::{Classify, ErrorType};

/// The default classifier of [`ClientMetricsLayer`](super::ClientMetricsLayer): the
/// `error_type` of an error the inner client returned, from its `source()` chain.
///
/// | found in the chain | `error_type` |
/// |---|---|
/// | a `std::io::Error` of kind `ConnectionRefused` | `connection_refused` |
/// | a `std::io::Error` of kind `TimedOut`, tower's `Elapsed`, tonic's `TimeoutExpired`, tokio's `Elapsed` | `timeout` |
/// | another `std::io::Error`, tonic's or hyper-util's `ConnectError` | `connect_error` |
/// | anything else | `_OTHER` |
///
/// The library depends on neither tonic, tower nor hyper-util: their errors are told by
/// their type name in their `Debug` form (`Elapsed(())`, `TimeoutExpired(())`,
/// `ConnectError(..)`), read only when a request failed.
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
        let chain = || chain(error);
        for error in chain() {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                return ErrorType::new(match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection_refused",
                    std::io::ErrorKind::TimedOut => "timeout",
                    _ => "connect_error",
                });
            }
        }
        for error in chain() {
            let debug = format!("{error:?}");
            if debug.starts_with("Elapsed") || debug.starts_with("TimeoutExpired") {
                return ErrorType::new("timeout");
            }
            if debug.starts_with("ConnectError") {
                return ErrorType::new("connect_error");
            }
        }
        ErrorType::OTHER
    }
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
