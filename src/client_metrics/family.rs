//! The family of HTTP requests sent: `http_client_request_duration_seconds`, by method,
//! server and status.

use std::time::Instant;

use http::Request;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::histogram::Buckets;
use crate::record::{
    CallFamily, End, Field, Guard, Histograms, Key, Method, OverflowLabels, Recorder, RequestBytes,
    RequestFacts, Shared, Table, UrlScheme, encode_server, error_id,
};

/// The family's metric, reserved in [`Metrics`](crate::Metrics).
pub(crate) const FAMILIES: [&str; 1] = ["http_client_request_duration_seconds"];

const METHOD: Field = Field::first(4);
const SCHEME: Field = Field::after(METHOD, 1);
const ERROR: Field = Field::after(SCHEME, 8);
/// The status code; 0 when no response came.
const STATUS: Field = Field::after(ERROR, 10);
/// The server's id (0: none known).
const SERVER: Field = Field::after(STATUS, 16);
/// Set when the server was beyond the cardinality limit.
const OVERFLOW: Field = Field::after(SERVER, 1);

/// The family of HTTP requests sent: the servers called.
pub(crate) struct ClientRequests {
    /// Servers (`host:port`) to their ids.
    servers: Table<Box<str>, u16>,
}

impl ClientRequests {
    /// The most servers a recorder tells apart: their ids are 16 bits.
    pub(crate) const MAX_SERVERS: usize = u16::MAX as usize;

    /// A recorder of requests sent, its family registered in `registry`.
    pub(crate) fn register(
        buckets: Buckets,
        max_series: usize,
        registry: &mut Registry,
    ) -> std::sync::Arc<Recorder<Self>> {
        let family = Self {
            servers: Table::new(max_series.min(Self::MAX_SERVERS)),
        };
        Recorder::register(family, Histograms::duration(buckets, max_series), registry)
    }

    /// Starts recording a request sent at `start` to `server` (`host:port`, when known)
    /// over `scheme`.
    pub(crate) fn start<B>(
        shared: &Shared<Self>,
        start: Instant,
        request: &Request<B>,
        server: Option<&str>,
        scheme: UrlScheme,
    ) -> Guard {
        let method = Method::from_http(request.method());
        let key = SCHEME.set(METHOD.set(Key(0), method as u64), scheme as u64);
        let server = match server {
            None => Some(0),
            Some(server) => shared
                .family
                .servers
                .get_or_insert(server, |len| {
                    (server.into(), u16::try_from(len + 1).unwrap_or(u16::MAX))
                })
                .map(|id| u64::from(*id)),
        };
        let key = match server {
            Some(server) => SERVER.set(key, server),
            None => OVERFLOW.set(key, 1),
        };
        let handle = shared.start(key);
        let facts = RequestFacts::new(request.version(), method);
        Guard::new(handle, start, key, facts, RequestBytes::Unknown, None)
    }
}

impl CallFamily for ClientRequests {
    const ACTIVE_SLOTS: usize = 0;

    fn active_slot(_: Key) -> usize {
        0
    }

    /// A request without a response (an error, the caller gone) has no status.
    fn series_key(&self, key: Key, end: End) -> Option<Key> {
        if OVERFLOW.get(key) != 0 {
            return None;
        }
        let key = STATUS.set(key, u64::from(end.status).min(STATUS.max()));
        Some(ERROR.set(key, u64::from(end.error)))
    }

    fn encode(recorder: &Recorder<Self>, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let series = recorder.sorted_series();
        let overflow = &recorder.overflow;
        if series.is_empty() && overflow.is_empty() {
            return Ok(());
        }
        let errors = recorder.error_names();
        let servers = recorder
            .family
            .servers
            .names_by_id(|id| Some(usize::from(*id)));
        let mut family = encoder.encode_descriptor(
            "http_client_request_duration",
            "Duration of HTTP client requests, until the response body ended.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (key, s) in &series {
            let error = ERROR.get(*key) as u8;
            let labels = RequestLabels {
                key: *key,
                server: servers.get(SERVER.get(*key) as usize).copied().flatten(),
                custom: errors.get(usize::from(error)).copied().flatten(),
            };
            s.duration.encode(&mut family.encode_family(&labels)?)?;
        }
        if !overflow.is_empty() {
            overflow
                .duration
                .encode(&mut family.encode_family(&OverflowLabels)?)?;
        }
        Ok(())
    }
}

/// The labels of one series of requests sent.
struct RequestLabels<'a> {
    key: Key,
    server: Option<&'a str>,
    /// The classifier's value, for an error id of its.
    custom: Option<&'a str>,
}

impl EncodeLabelSet for RequestLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let method = Method::from_index(METHOD.get(self.key) as usize);
        ("http_request_method", method.as_str()).encode(encoder.encode_label())?;
        if let Some(server) = self.server {
            let scheme = UrlScheme::from_index(SCHEME.get(self.key) as usize);
            encode_server(server, scheme, encoder)?;
        }
        let value = STATUS.get(self.key) as u16;
        let mut code = [0u8; 3];
        let status = (value != 0).then(|| {
            let digit = |n: u16| b'0' + (n % 10) as u8;
            code = [digit(value / 100), digit(value / 10), digit(value)];
            std::str::from_utf8(&code).unwrap_or("_OTHER")
        });
        if let Some(status) = status {
            ("http_response_status_code", status).encode(encoder.encode_label())?;
        }
        let error_type = match ERROR.get(self.key) as u8 {
            error_id::NONE if value >= 400 => status,
            error_id::NONE => None,
            id => match error_id::NAMES.get(usize::from(id)) {
                Some(name) => Some(*name),
                None => Some(self.custom.unwrap_or("_OTHER")),
            },
        };
        if let Some(error_type) = error_type {
            ("error_type", error_type).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ClientRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequests")
            .field("servers", &self.servers.len())
            .finish()
    }
}
