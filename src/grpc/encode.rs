//! The scrape side of the RPC and HTTP client recorders: their own families and labels,
//! from the tables the HTTP layer's machinery records into.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{SYSTEM, status_labels};
use crate::http_metrics::labels::{OverflowLabels, SeriesKey, UrlScheme, error_id};
use crate::http_metrics::recorder::{ACTIVE_SLOTS, Kind, Recorder, Series};

/// The families of one recorder of an RPC or client [`Kind`].
pub(crate) struct Families(pub(crate) Arc<Recorder>);

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The labels of one series of these families.
struct Labels<'a> {
    kind: Kind,
    key: SeriesKey,
    method: Option<&'a str>,
    /// `host:port`.
    address: Option<&'a str>,
    custom: Option<&'a str>,
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (status, error_type): (Option<&str>, Option<&str>);
        let mut code = [0u8; 3];
        if self.kind == Kind::HttpClient {
            ("http_request_method", self.key.method().as_str()).encode(encoder.encode_label())?;
            let value = self.key.status();
            status = (value != 0).then(|| {
                let digit = |n: u16| b'0' + (n % 10) as u8;
                code = [digit(value / 100), digit(value / 10), digit(value)];
                std::str::from_utf8(&code).unwrap_or("_OTHER")
            });
            error_type = match self.key.error() {
                0 if value >= 400 => status,
                0 => None,
                id if id < error_id::FIRST_CUSTOM => Some(error_id::BUILT_IN[usize::from(id)]),
                _ => Some(self.custom.unwrap_or("_OTHER")),
            };
        } else {
            ("rpc_system_name", SYSTEM).encode(encoder.encode_label())?;
            if let Some(method) = self.method {
                ("rpc_method", method).encode(encoder.encode_label())?;
            }
            let (name, error) =
                status_labels(self.key.error(), self.kind == Kind::RpcClient, |_| {
                    self.custom
                });
            status = Some(name);
            error_type = error;
        }
        if let Some(address) = self.address {
            // `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults by scheme.
            let (host, port) = match address.rsplit_once(':') {
                Some((host, port)) if !address.ends_with(']') => (host, port),
                _ => (address, ""),
            };
            let port = match (port, self.key.scheme()) {
                ("", UrlScheme::Https) => "443",
                ("", UrlScheme::Http) => "80",
                (port, _) => port,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            ("server_address", host).encode(encoder.encode_label())?;
            ("server_port", port).encode(encoder.encode_label())?;
        }
        if let Some(status) = status {
            let name = match self.kind {
                Kind::HttpClient => "http_response_status_code",
                _ => "rpc_response_status_code",
            };
            (name, status).encode(encoder.encode_label())?;
        }
        if let Some(error_type) = error_type {
            ("error_type", error_type).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The labels of the in-flight gauge of served calls.
struct SystemLabel;

impl EncodeLabelSet for SystemLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        ("rpc_system_name", SYSTEM).encode(encoder.encode_label())
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let recorder = &*self.0;
        let kind = recorder.config.kind;
        let mut series: Vec<(SeriesKey, &Series)> =
            recorder.series.iter().map(|(key, s)| (*key, s)).collect();
        series.sort_unstable_by_key(|(key, _)| *key);
        let mut routes: Vec<Option<&str>> = Vec::new();
        for (name, route) in recorder.routes.iter().filter(|(_, route)| !route.excluded) {
            let id = route.id as usize;
            if routes.len() <= id {
                routes.resize(id + 1, None);
            }
            routes[id] = Some(name);
        }
        let route = |id: u32| routes.get(id as usize).copied().flatten();
        let mut errors: Vec<Option<&str>> = Vec::new();
        for (name, id) in recorder.errors.iter() {
            let id = usize::from(*id);
            if errors.len() <= id {
                errors.resize(id + 1, None);
            }
            errors[id] = Some(name);
        }
        let (name, help) = match kind {
            Kind::RpcServer => (
                "rpc_server_call_duration",
                "Duration of RPCs served, until the response stream ended.",
            ),
            Kind::RpcClient => (
                "rpc_client_call_duration",
                "Duration of RPCs made, until the response stream ended.",
            ),
            Kind::HttpClient | Kind::Http => (
                "http_client_request_duration",
                "Duration of HTTP client requests, until the response body ended.",
            ),
        };
        let overflow = &recorder.overflow;
        if !series.is_empty() || !overflow.is_empty() {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (key, s) in &series {
                let (method, address) = match kind {
                    Kind::RpcServer => (route(key.route()), None),
                    Kind::RpcClient => (route(key.route() >> 16), route(key.route() & 0xffff)),
                    _ => (None, route(key.route() & 0xffff)),
                };
                let labels = Labels {
                    kind,
                    key: *key,
                    method,
                    address,
                    custom: errors.get(usize::from(key.error())).copied().flatten(),
                };
                s.duration.encode(&mut family.encode_family(&labels)?)?;
            }
            if !overflow.is_empty() {
                overflow
                    .duration
                    .encode(&mut family.encode_family(&OverflowLabels)?)?;
            }
        }
        let seen = recorder
            .active_seen
            .iter()
            .any(|seen| seen.load(std::sync::atomic::Ordering::Relaxed));
        if kind == Kind::RpcServer && seen {
            let mut family = encoder.encode_descriptor(
                "rpc_server_active_calls",
                "Number of RPCs in flight on the server.",
                None,
                MetricType::Gauge,
            )?;
            let value = (0..ACTIVE_SLOTS)
                .map(|slot| recorder.active.sum(slot) as i64)
                .sum::<i64>()
                .max(0);
            family.encode_family(&SystemLabel)?.encode_gauge(&value)?;
        }
        Ok(())
    }
}
