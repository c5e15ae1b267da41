//! The scrape side of the gRPC families: their duration histograms and labels.

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{Code, SYSTEM};
use crate::exemplar::splice::Leaving;
use crate::record::{
    CallFamily, Key, OverflowLabels, Recorder, UrlScheme, encode_server, error_id,
};

/// The labels of one series of a gRPC duration histogram.
pub(super) struct CallLabels<'a> {
    /// The error id the call ended with.
    pub(super) error: u8,
    /// The classifier's value, for an error id of its.
    pub(super) custom: Option<&'a str>,
    /// `package.Service/Method`.
    pub(super) method: Option<&'a str>,
    /// Whether the call was made (every code but `OK` is then a failure) rather than
    /// served.
    pub(super) client: bool,
    /// The server called (`host:port`) and the scheme its port defaults by: client
    /// side only.
    pub(super) server: Option<(&'a str, UrlScheme)>,
}

impl EncodeLabelSet for CallLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        ("rpc_system_name", SYSTEM).encode(encoder.encode_label())?;
        if let Some(method) = self.method {
            ("rpc_method", method).encode(encoder.encode_label())?;
        }
        if let Some((address, scheme)) = self.server {
            encode_server(address, scheme, encoder)?;
        }
        let (status, error_type) = status_labels(self.error, self.client, || self.custom);
        ("rpc_response_status_code", status).encode(encoder.encode_label())?;
        if let Some(error_type) = error_type {
            ("error_type", error_type).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// `rpc_response_status_code` and `error_type` of a finished call's error id, on the
/// server (`client` false) or client side; `custom` gives a classifier's value.
pub(super) fn status_labels<'a>(
    id: u8,
    client: bool,
    custom: impl FnOnce() -> Option<&'a str>,
) -> (&'static str, Option<&'a str>) {
    if let Some(code) = Code::of_error_id(id) {
        let failed = if client {
            code != Code::Ok
        } else {
            code.is_server_error()
        };
        return (code.as_str(), failed.then_some(code.as_str()));
    }
    // The call ended without a status: the engine's own error, or the classifier's (a
    // client's: its code is the one a gRPC client reports for that error).
    let error = match error_id::NAMES.get(usize::from(id)) {
        Some(name) => name,
        None => custom().unwrap_or("_OTHER"),
    };
    let code = if client {
        code_of_error(error)
    } else {
        Code::Unknown
    };
    (code.as_str(), Some(error))
}

/// The gRPC code a client reports for a call that failed with this `error_type`
/// (the values of the client layer's default classifier, `ClientErrors`, whose docs
/// have the table; a code's name is that code, before this is reached).
fn code_of_error(error_type: &str) -> Code {
    match error_type {
        "connection_refused" | "connect_error" | "keepalive_timeout" => Code::Unavailable,
        "timeout" => Code::DeadlineExceeded,
        "cancelled" | "connection_closed" => Code::Cancelled,
        _ => Code::Unknown,
    }
}

/// Encodes the duration histogram `name` of a gRPC recorder, each series labelled by
/// `labels`.
pub(super) fn encode_durations<'r, P: CallFamily>(
    recorder: &'r Recorder<P>,
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    labels: impl Fn(Key, &[Option<&'r str>]) -> CallLabels<'r>,
) -> Result<(), std::fmt::Error> {
    let series = recorder.sorted_series();
    let overflow = &recorder.overflow;
    if series.is_empty() && overflow.is_empty() {
        return Ok(());
    }
    let errors = recorder.error_names();
    let mut family =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    // The exemplars, for the exporter that encodes (`exemplar/splice.rs`).
    let mut exemplars = Leaving::new(
        recorder.histograms.exemplars,
        || format!("{name}_{}", Unit::Seconds.as_str()),
        overflow.duration.classic_buckets(),
        series.len() + 1,
    );
    for (key, s) in &series {
        s.duration
            .encode(&mut family.encode_family(&labels(*key, &errors))?)?;
        exemplars.keep(s.exemplars.as_deref());
    }
    if !overflow.is_empty() {
        overflow
            .duration
            .encode(&mut family.encode_family(&OverflowLabels)?)?;
        exemplars.keep(overflow.exemplars.as_deref());
    }
    exemplars.leave();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_codes_are_failures() {
        let none = || None;
        let id = Code::error_id;
        assert_eq!(
            status_labels(id(Code::NotFound), false, none),
            ("NOT_FOUND", None)
        );
        assert_eq!(
            status_labels(id(Code::NotFound), true, none),
            ("NOT_FOUND", Some("NOT_FOUND"))
        );
        assert_eq!(
            status_labels(id(Code::Internal), false, none),
            ("INTERNAL", Some("INTERNAL"))
        );
        assert_eq!(status_labels(id(Code::Ok), true, none), ("OK", None));
        assert_eq!(
            status_labels(error_id::PANIC, false, none),
            ("UNKNOWN", Some("panic"))
        );
        assert_eq!(
            status_labels(super::super::code::FIRST_CUSTOM_ERROR, true, || Some(
                "connect_error"
            )),
            ("UNAVAILABLE", Some("connect_error"))
        );
    }
}
