//! The family of gRPC calls made: `rpc_client_call_duration_seconds`, recorded by the
//! client layer for the requests it sends that are gRPC calls.

use std::time::Instant;

use http::{HeaderMap, Request, StatusCode};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::DeadlineField;
use super::code::{self, Code};
use super::encode::{CallLabels, encode_durations};
use crate::classify::Classify;
use crate::histogram::Buckets;
use crate::record::{
    CallFamily, End, Field, Guard, Histograms, Key, Method, ReadEnd, Recorder, RequestBytes,
    RequestFacts, Shared, Table, UrlScheme, error_id,
};

const ERROR: Field = Field::first(8);
const SCHEME: Field = Field::after(ERROR, 1);
/// The server's id (0: none known).
const SERVER: Field = Field::after(SCHEME, 16);
const METHOD: Field = Field::after(SERVER, 16);
/// Set when the server or the method was beyond the cardinality limit.
const OVERFLOW: Field = Field::after(METHOD, 1);
/// The call's deadline (its `grpc-timeout`), until it ends.
const DEADLINE: DeadlineField = DeadlineField::after(OVERFLOW, 22);

/// The family of gRPC calls made: the server called and the full method.
pub(crate) struct ClientCalls {
    /// Servers (`host:port`) to their ids.
    servers: Table<Box<str>, u16>,
    /// Full methods to their ids.
    methods: Table<Box<str>, u16>,
}

/// Interns `value` in `table`, ids from 1; `None` past the limit.
fn intern(table: &Table<Box<str>, u16>, value: &str) -> Option<u64> {
    table
        .get_or_insert(value, |len| {
            (value.into(), u16::try_from(len + 1).unwrap_or(u16::MAX))
        })
        .map(|id| u64::from(*id))
}

impl ClientCalls {
    /// The most servers, and methods, a recorder tells apart: their ids are 16 bits.
    pub(crate) const MAX_NAMES: usize = u16::MAX as usize;

    /// A recorder of calls made, its family registered in `registry`.
    pub(crate) fn register(
        buckets: Buckets,
        max_series: usize,
        registry: &mut Registry,
    ) -> std::sync::Arc<Recorder<Self>> {
        let names = max_series.min(Self::MAX_NAMES);
        let family = Self {
            servers: Table::new(names),
            methods: Table::new(names),
        };
        Recorder::register(family, Histograms::duration(buckets, max_series), registry)
    }

    /// Starts recording a gRPC call sent at `start` to `server` (`host:port`, when
    /// known) over `scheme`.
    pub(crate) fn start<B>(
        shared: &Shared<Self>,
        start: Instant,
        request: &Request<B>,
        server: Option<&str>,
        scheme: UrlScheme,
    ) -> Guard {
        let family = &shared.family;
        let server = server.map_or(Some(0), |server| intern(&family.servers, server));
        let method = intern(&family.methods, super::full_method(request.uri().path()));
        let key = SCHEME.set(Key(0), scheme as u64);
        let key = match (server, method) {
            (Some(server), Some(method)) => METHOD.set(SERVER.set(key, server), method),
            _ => OVERFLOW.set(key, 1),
        };
        let key = DEADLINE.set(key, request.headers());
        let handle = shared.start(key);
        let facts = RequestFacts::new(request.version(), Method::Post);
        Guard::new(handle, start, key, facts, RequestBytes::Unknown, None)
    }
}

impl CallFamily for ClientCalls {
    const ACTIVE_SLOTS: usize = 0;
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
        super::read_head::<C, false>(classify, guard, status, headers)
    }

    /// A call the caller dropped is `CANCELLED`; past the deadline the client sent
    /// (`grpc-timeout`), a call cancelled so, or answered `CANCELLED` (tonic's server
    /// answers its own timeout so), is `DEADLINE_EXCEEDED`, as its server records it.
    /// The scheme stays: the server's default port depends on it.
    fn series_key(&self, key: Key, end: End) -> Option<Key> {
        if OVERFLOW.get(key) != 0 {
            return None;
        }
        let error = match end.error {
            error_id::NONE => Code::Unknown.error_id(),
            error_id::CANCELLED => Code::Cancelled.error_id(),
            error => error,
        };
        let error = if error == Code::Cancelled.error_id() && DEADLINE.passed(key, end.seconds) {
            Code::DeadlineExceeded.error_id()
        } else {
            error
        };
        Some(ERROR.set(DEADLINE.clear(key), u64::from(error)))
    }

    fn encode(recorder: &Recorder<Self>, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let family = &recorder.family;
        let servers = family.servers.names_by_id(|id| Some(usize::from(*id)));
        let methods = family.methods.names_by_id(|id| Some(usize::from(*id)));
        encode_durations(
            recorder,
            &mut encoder,
            "rpc_client_call_duration",
            "Duration of RPCs made, until the response stream ended.",
            |key, errors| {
                let scheme = UrlScheme::from_index(SCHEME.get(key) as usize);
                CallLabels {
                    error: ERROR.get(key) as u8,
                    custom: errors.get(ERROR.get(key) as usize).copied().flatten(),
                    method: methods.get(METHOD.get(key) as usize).copied().flatten(),
                    client: true,
                    server: servers
                        .get(SERVER.get(key) as usize)
                        .copied()
                        .flatten()
                        .map(|server| (server, scheme)),
                }
            },
        )
    }
}

impl std::fmt::Debug for ClientCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCalls")
            .field("servers", &self.servers.len())
            .field("methods", &self.methods.len())
            .finish()
    }
}
