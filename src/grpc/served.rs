//! The family of gRPC calls served: `rpc_server_call_duration_seconds` and
//! `rpc_server_active_calls`, recorded by the HTTP layer for the requests that are gRPC
//! calls.

use std::time::Instant;

use http::{HeaderMap, Request, StatusCode};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabel, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::DeadlineField;
use super::code::{self, Code};
use super::encode::{CallLabels, encode_durations};
use crate::classify::Classify;
use crate::exemplar::TraceContext;
use crate::histogram::Buckets;
use crate::record::{
    End, Family, Field, Guard, Histograms, Key, Method, ReadEnd, Recorder, RequestBytes,
    RequestFacts, Shared, Table, error_id,
};

/// The method id of `_OTHER`, the method of calls to a method the server does not have
/// (answered `UNIMPLEMENTED`): the first in the table.
const OTHER_METHOD: u64 = 1;

/// The method id of methods beyond the cardinality limit: their series overflow.
const OVERFLOW_METHOD: u64 = u32::MAX as u64;

const ERROR: Field = Field::first(8);
const METHOD: Field = Field::after(ERROR, 32);
/// The call's deadline, until it ends.
const DEADLINE: DeadlineField = DeadlineField::after(METHOD, 24);

/// The family of gRPC calls served: the full method of each call, `package.Service/Method`.
pub(crate) struct ServerCalls {
    /// Full methods to their ids.
    methods: Table<Box<str>, u32>,
}

impl ServerCalls {
    /// A recorder of calls served, its families registered in `registry`; its duration
    /// buckets keep exemplars when `exemplars` is true (the HTTP layer's option).
    pub(crate) fn register(
        buckets: Buckets,
        max_series: usize,
        exemplars: bool,
        registry: &mut Registry,
    ) -> std::sync::Arc<Recorder<Self>> {
        let family = Self {
            methods: Table::new(max_series),
        };
        let other = family.method_id("_OTHER");
        debug_assert_eq!(other, OTHER_METHOD);
        let histograms = Histograms {
            exemplars,
            ..Histograms::duration(buckets, max_series)
        };
        let recorder = std::sync::Arc::new(Recorder::new(family, histograms));
        registry.register_collector(Box::new(recorder.clone()));
        recorder
    }

    /// The id of a full method, interned; [`OVERFLOW_METHOD`] past the limit.
    fn method_id(&self, method: &str) -> u64 {
        self.methods
            .get_or_insert(method, |len| (method.into(), len as u32 + 1))
            .map_or(OVERFLOW_METHOD, |id| u64::from(*id))
    }

    /// Starts recording a gRPC call that entered the HTTP layer at `start`, with its
    /// trace when exemplars are on: out of line, so that the HTTP layer's path for other
    /// requests stays as short as it was.
    #[inline(never)]
    pub(crate) fn start<B>(
        shared: &Shared<Self>,
        start: Instant,
        request: &Request<B>,
        trace: Option<TraceContext>,
    ) -> Guard {
        let method = shared
            .family
            .method_id(super::full_method(request.uri().path()));
        let key = DEADLINE.set(METHOD.set(Key(0), method), request.headers());
        let handle = shared.start(key);
        let facts = RequestFacts::new(request.version(), Method::Post);
        Guard::new(handle, start, key, facts, RequestBytes::Unknown, trace)
    }
}

impl Family for ServerCalls {
    const ACTIVE_SLOTS: usize = 1;
    const FIRST_CUSTOM_ERROR: u8 = code::FIRST_CUSTOM_ERROR;

    fn active_slot(_: Key) -> usize {
        0
    }

    fn own_error(value: &str) -> Option<u8> {
        Code::from_name(value).map(Code::error_id)
    }

    fn read_head<C: Classify<E>, E>(
        classify: &C,
        guard: &mut Guard,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<ReadEnd<C>> {
        super::read_head(classify, guard, status, headers)
    }

    /// A call cancelled by the engine (its future or body dropped) is `CANCELLED`, or
    /// `DEADLINE_EXCEEDED` past its `grpc-timeout`. A call answered `UNIMPLEMENTED` is
    /// the method `_OTHER` (the conventions' value for a method the server does not
    /// know): the method comes from the request path, which clients choose.
    fn series_key(&self, key: Key, end: End) -> Option<Key> {
        let error = match end.error {
            error_id::NONE => Code::Unknown.error_id(),
            error_id::CANCELLED if DEADLINE.passed(key, end.seconds) => {
                Code::DeadlineExceeded.error_id()
            }
            error_id::CANCELLED => Code::Cancelled.error_id(),
            error => error,
        };
        let key = DEADLINE.clear(key);
        let method = if error == Code::Unimplemented.error_id() {
            OTHER_METHOD
        } else {
            METHOD.get(key)
        };
        if method == OVERFLOW_METHOD {
            return None;
        }
        Some(ERROR.set(METHOD.set(key, method), u64::from(error)))
    }

    fn encode(recorder: &Recorder<Self>, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut methods: Vec<Option<&str>> = Vec::new();
        for (name, id) in recorder.family.methods.iter() {
            let id = *id as usize;
            if methods.len() <= id {
                methods.resize(id + 1, None);
            }
            methods[id] = Some(name);
        }
        encode_durations(
            recorder,
            &mut encoder,
            "rpc_server_call_duration",
            "Duration of RPCs served, until the response stream ended.",
            |key, errors| CallLabels {
                error: ERROR.get(key) as u8,
                custom: errors.get(ERROR.get(key) as usize).copied().flatten(),
                method: methods.get(METHOD.get(key) as usize).copied().flatten(),
                client: false,
                server: None,
            },
        )?;
        if recorder.active_seen(0) {
            let mut family = encoder.encode_descriptor(
                "rpc_server_active_calls",
                "Number of RPCs in flight on the server.",
                None,
                MetricType::Gauge,
            )?;
            family
                .encode_family(&SystemLabel)?
                .encode_gauge(&recorder.active(0))?;
        }
        Ok(())
    }
}

/// The labels of the in-flight gauge of served calls.
struct SystemLabel;

impl EncodeLabelSet for SystemLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        ("rpc_system_name", super::SYSTEM).encode(encoder.encode_label())
    }
}

impl std::fmt::Debug for ServerCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCalls")
            .field("methods", &self.methods.len())
            .finish()
    }
}
