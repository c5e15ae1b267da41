//! The scrape side: every listener's series, read at scrape time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::errors::{AcceptError, Handshake};
use super::series::{Listeners, Series};

/// The label of the series of the listeners beyond the limit.
const OVERFLOW_LABEL: &str = "otel_metric_overflow";

/// The collector of the connection families.
#[derive(Debug)]
pub(crate) struct Families(pub(crate) Arc<Listeners>);

/// The labels of a listener's series, and an `error_type`.
struct Labels<'a> {
    series: &'a Series,
    otel: bool,
    error_type: Option<&'static str>,
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let endpoint = &self.series.endpoint;
        if self.series.overflow {
            (OVERFLOW_LABEL, "true").encode(encoder.encode_label())?;
        }
        if let Some(address) = &endpoint.address {
            ("server_address", &**address).encode(encoder.encode_label())?;
        }
        if let Some(port) = endpoint.port {
            ("server_port", port).encode(encoder.encode_label())?;
        }
        if self.otel {
            if let Some(transport) = endpoint.transport {
                ("network_transport", transport).encode(encoder.encode_label())?;
            }
            if let Some(network) = endpoint.network {
                ("network_type", network).encode(encoder.encode_label())?;
            }
        }
        if let Some(error_type) = self.error_type {
            ("error_type", error_type).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = self.0.all();
        if all.is_empty() {
            return Ok(());
        }
        let names = self.0.names;
        let labels = |series, error_type| Labels {
            series,
            otel: names.otel_labels,
            error_type,
        };

        let mut family = encoder.encode_descriptor(
            names.open,
            "Number of connections accepted and not yet closed, per listener.",
            None,
            MetricType::Gauge,
        )?;
        for series in &all {
            let open = series.open.load(Ordering::Relaxed) as i64;
            family
                .encode_family(&labels(series, None))?
                .encode_gauge(&open)?;
        }

        let mut family = encoder.encode_descriptor(
            names.duration,
            "Duration of connections, from accept to close; its count is the connections closed.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for series in &all {
            series
                .duration
                .encode(&mut family.encode_family(&labels(series, None))?)?;
        }

        let mut family = encoder.encode_descriptor(
            names.rejected,
            "Connections accepted and closed at once because the listener had max_connections open.",
            None,
            MetricType::Counter,
        )?;
        for series in &all {
            let rejected = series.rejected.load(Ordering::Relaxed);
            family
                .encode_family(&labels(series, None))?
                .encode_counter::<NoLabelSet, _, u64>(&rejected, None)?;
        }

        let mut family = encoder.encode_descriptor(
            names.accept_errors,
            "Failed accepts, by kind (fd_limit: EMFILE or ENFILE); the accept loop pauses and tries again.",
            None,
            MetricType::Counter,
        )?;
        for series in &all {
            for kind in AcceptError::ALL {
                let errors = series.accept_errors[kind.index()].load(Ordering::Relaxed);
                family
                    .encode_family(&labels(series, Some(kind.as_str())))?
                    .encode_counter::<NoLabelSet, _, u64>(&errors, None)?;
            }
        }

        let capped: Vec<(&Arc<Series>, usize)> = all
            .iter()
            .filter_map(|series| {
                let limit = series.limit.load(Ordering::Relaxed);
                (limit > 0).then_some((series, limit))
            })
            .collect();
        if !capped.is_empty() {
            let mut family = encoder.encode_descriptor(
                names.limit,
                "The most connections a listener keeps open (max_connections); beyond, it turns them away.",
                None,
                MetricType::Gauge,
            )?;
            for (series, limit) in capped {
                family
                    .encode_family(&labels(series, None))?
                    .encode_gauge(&(limit as i64))?;
            }
        }

        let shaking: Vec<_> = all
            .iter()
            .filter_map(|series| Some((series, series.handshakes.get()?)))
            .collect();
        if !shaking.is_empty() {
            let mut family = encoder.encode_descriptor(
                names.handshake,
                "Duration of TLS handshakes measured with MeteredStream::handshake, error_type on failures.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (series, histograms) in shaking {
                for (outcome, histogram) in Handshake::ALL.iter().zip(histograms.iter()) {
                    // Successes always; each kind of failure once it happened.
                    if *outcome != Handshake::Done && histogram.count() == 0 {
                        continue;
                    }
                    histogram.encode(
                        &mut family.encode_family(&labels(series, outcome.error_type()))?,
                    )?;
                }
            }
        }
        Ok(())
    }
}
